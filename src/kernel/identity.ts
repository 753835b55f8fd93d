/**
 * What identifies a kernel to the rules that depend on more than its architecture (the guest
 * memory one, vm/memory.ts): its release (`uname -r`), who built it, its config and its page
 * size. A kernel directory's manifest says the release and the builder; a bare kernel file says
 * them in its own version string ("Linux version 6.1.0-57-cloud-amd64 (debian-kernel@...)"),
 * which every kernel carries: in the bzImage header (boot protocol 2.00+), else in its bytes.
 */
import { basename, dirname } from "node:path";
import { createGunzip } from "node:zlib";
import type { Arch } from "../arch/arch.js";
import type { KernelKind } from "../artifact/kernel.js";
import { ElfFile } from "../elf/sections.js";
import { inputStream, openInput, readHead } from "../util/input-file.js";
import type { KernelConfig } from "./config.js";
import { manifestIdentity, readManifest } from "./manifest.js";

export type KernelBuilder = "debian" | "slimroot";

export interface KernelIdentity {
  arch: Arch;
  /** `uname -r`, e.g. 6.1.0-57-cloud-amd64 or 6.1.192; undefined when it could not be read. */
  release?: string;
  /** Who built it, when that is known: Debian's packages, or `slimroot kernel build`. */
  builder?: KernelBuilder;
  config?: KernelConfig;
  /** Bytes: the config's, else the arm64 Image header's; 4096 on x86 (its only size). */
  pageSize: number;
  /** False when the page size is assumed (an arm64 kernel that says neither). */
  pageSizeKnown: boolean;
}

/** What the caller knows beside the file: a kernel directory's manifest, its config, an embedded app. */
export interface KnownAboutKernel {
  /** The manifest's `version` and `source` (manifest.ts), for a kernel directory. */
  manifest?: { version: string; source: string };
  config?: KernelConfig;
  /** It carries a slimroot app (kernel build --embed): only slimroot's kernel build makes those. */
  embedded?: boolean;
}

/** How far into a kernel file (or its inflated Image.gz) the version string is looked for. */
const MAX_SCAN_BYTES = 128 << 20;
const BANNER = Buffer.from("Linux version ");
/** The version string is one line, well under this. */
const MAX_BANNER = 512;

/** The builder a manifest's `source` or a version string names. */
function builderOf(text: string): KernelBuilder | undefined {
  if (/^slimroot kernel build\b/.test(text)) return "slimroot";
  if (/^debian linux-image-/.test(text) || text.includes("(debian-kernel@lists.debian.org)")) return "debian";
  return undefined;
}

/** The page size a config selects: arm64's CONFIG_ARM64_{4,16,64}K_PAGES; undefined if it names none. */
export function configPageSize(c: KernelConfig): number | undefined {
  for (const k of [4, 16, 64]) if (c.get(`ARM64_${k}K_PAGES`) === "y") return k * 1024;
  if (c.get("X86_64") === "y" || c.get("X86") === "y") return 4096;
  return undefined;
}

/** The arm64 Image header's page size (flags bits 1-2: 1 = 4K, 2 = 16K, 3 = 64K; 0 = unspecified). */
export function imagePageSize(head: Buffer): number | undefined {
  if (head.length < 64 || head.readUInt32LE(56) !== 0x644d5241) return undefined;
  const bits = Number((head.readBigUInt64LE(24) >> 1n) & 3n);
  return bits === 0 ? undefined : [0, 4096, 16384, 65536][bits];
}

/** The version string in a bzImage header (kernel_version, protocol 2.00+), or undefined. */
export function bzImageVersion(head: Buffer): string | undefined {
  if (head.length < 0x210 || head.toString("latin1", 0x202, 0x206) !== "HdrS") return undefined;
  if (head.readUInt16LE(0x206) < 0x200) return undefined;
  const at = head.readUInt16LE(0x20e) + 0x200;
  if (at >= head.length) return undefined;
  const end = head.indexOf(0, at);
  const text = head.toString("latin1", at, end < 0 ? Math.min(head.length, at + MAX_BANNER) : end);
  return /^\d+\.\d+\S* /.test(text) ? text : undefined;
}

/** The text after "Linux version " in a kernel's bytes (an Image, an ELF vmlinux, an inflated Image.gz), or in `range` of them. */
async function scanBanner(
  path: string,
  gzip: boolean,
  range: { start?: number; end?: number } = {},
): Promise<string | undefined> {
  const raw = await inputStream(path, path, range);
  const stream = gzip ? raw.pipe(createGunzip()) : raw;
  let tail: Buffer = Buffer.alloc(0);
  let seen = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      const buf = tail.length ? Buffer.concat([tail, chunk]) : chunk;
      for (let at = buf.indexOf(BANNER); at >= 0; at = buf.indexOf(BANNER, at + 1)) {
        const rest = buf.subarray(at + BANNER.length, at + BANNER.length + MAX_BANNER);
        const end = rest.findIndex((b) => b === 0x0a || b === 0);
        // Cut at the chunk's end: the tail carries it into the next round.
        if (end < 0 && rest.length < MAX_BANNER) break;
        const text = rest.toString("latin1", 0, end < 0 ? rest.length : end);
        // printk formats ("Linux version %s") are not it: the real one has a release and "(user@host)".
        if (/^\d+\.\d+\S* \(/.test(text)) return text;
      }
      tail = buf.subarray(Math.max(0, buf.length - BANNER.length - MAX_BANNER));
      seen += chunk.length;
      if (seen > MAX_SCAN_BYTES) return undefined;
    }
  } catch {
    return undefined; // a damaged Image.gz: the release stays unknown
  } finally {
    raw.destroy();
  }
  return undefined;
}

/**
 * An ELF kernel's .rodata, where its version string is (linux_banner, init/version.c): some
 * 0.6 MB of slimroot's 27.7 MB vmlinux with an app built in, where the string is 10 MB in.
 * Undefined when the file has no such section (the whole file is scanned then).
 */
async function rodataRange(path: string): Promise<{ start: number; end: number } | undefined> {
  const { fh, size } = await openInput(path);
  try {
    const s = new ElfFile(fh.fd, size).sections.find((x) => x.name === ".rodata");
    return s && s.size > 0 && s.offset + s.size <= size
      ? { start: s.offset, end: s.offset + s.size - 1 }
      : undefined;
  } catch {
    return undefined; // a damaged ELF: the whole file is scanned, as any other kernel's
  } finally {
    await fh.close();
  }
}

/** The kernel's version string ("RELEASE (user@host) ..."), read from the file. */
export async function kernelVersionString(path: string, kind: KernelKind): Promise<string | undefined> {
  if (kind.format === "bzImage") return bzImageVersion(await readHead(path, 64 * 1024));
  const rodata = kind.format === "elf" && !kind.gzip ? await rodataRange(path) : undefined;
  return (rodata && (await scanBanner(path, false, rodata))) ?? scanBanner(path, kind.gzip === true);
}

/** The manifest of the kernel directory `path` is in, when it names `path` as its kernel. */
async function manifestNaming(path: string): Promise<{ version: string; source: string } | undefined> {
  const m = await readManifest(dirname(path)).catch(() => undefined);
  if (!m || ![m.kernel, m.vmlinux].includes(basename(path))) return undefined;
  return manifestIdentity(m);
}

/**
 * The identity of the kernel file `path` (of kind `kind`): from what the caller knows (a
 * manifest, a config, an embedded app) and else from the file's version string and header.
 */
export async function readKernelIdentity(
  path: string,
  kind: KernelKind,
  known: KnownAboutKernel = {},
): Promise<KernelIdentity> {
  // A file given by its path in a kernel directory (kernels/slimroot-amd64-KEY/bzImage) is that directory's kernel.
  const manifest = known.manifest ?? (await manifestNaming(path));
  let release = manifest?.version;
  let builder = manifest ? builderOf(manifest.source) : undefined;
  if (release === undefined || builder === undefined) {
    const banner = await kernelVersionString(path, kind);
    release ??= banner?.split(" ")[0];
    builder ??= banner === undefined ? undefined : builderOf(banner);
  }
  if (known.embedded) builder = "slimroot";
  let pageSize = kind.arch === "amd64" ? 4096 : known.config && configPageSize(known.config);
  if (pageSize === undefined && kind.format === "arm64-image")
    pageSize = imagePageSize(await readHead(path, 64));
  return {
    arch: kind.arch,
    ...(release ? { release } : {}),
    ...(builder ? { builder } : {}),
    ...(known.config ? { config: known.config } : {}),
    pageSize: pageSize ?? 4096,
    pageSizeKnown: pageSize !== undefined,
  };
}
