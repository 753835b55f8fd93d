/**
 * Reads a kernel module's `.modinfo` ELF section: NUL-separated `key=value` strings such as
 * `name=virtio_net` and `depends=virtio,virtio_ring,net_failover`. That is all depmod itself
 * uses, so no modules.dep is needed. Accepts ELF32/ELF64 of either byte order; every offset
 * is checked, so a corrupt or hostile file gives a ModinfoError and nothing else.
 */

import { ElfError } from "../elf/elf.js";
import { findSection } from "../elf/sections.js";

export class ModinfoError extends Error {}

export interface ModInfo {
  /** `name=`, absent in very old modules. */
  name?: string;
  /** `depends=`, split on commas; empty when the module needs only the core kernel. */
  depends: string[];
  vermagic?: string;
  /** Every key=value pair in section order (keys such as `alias` repeat). */
  entries: [key: string, value: string][];
}

/** Splits a .modinfo section into key=value pairs; strings without `=` are skipped. */
export function parseModinfoSection(section: Buffer): ModInfo {
  const info: ModInfo = { depends: [], entries: [] };
  for (const raw of section.toString("utf8").split("\0")) {
    const eq = raw.indexOf("=");
    if (eq <= 0) continue;
    const key = raw.slice(0, eq);
    const value = raw.slice(eq + 1);
    info.entries.push([key, value]);
    if (key === "name") info.name = value;
    else if (key === "depends") info.depends = value.split(",").filter(Boolean);
    else if (key === "vermagic") info.vermagic = value;
  }
  return info;
}

/** The .modinfo of an (uncompressed) .ko file's bytes. */
export function readModinfo(ko: Buffer): ModInfo {
  let section: Buffer | undefined;
  try {
    section = findSection(ko, ".modinfo");
  } catch (err) {
    if (err instanceof ElfError) throw new ModinfoError(err.message);
    throw err;
  }
  if (!section) throw new ModinfoError("no .modinfo section: not a kernel module");
  return parseModinfoSection(section);
}

/** The module name the kernel derives from a file name: `virtio-rng.ko.xz` -> `virtio_rng`. */
export function moduleNameOfFile(fileName: string): string {
  const base = fileName.slice(fileName.lastIndexOf("/") + 1);
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, "").replace(/-/g, "_");
}
