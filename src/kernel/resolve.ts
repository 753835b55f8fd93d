/**
 * Turns what the user said about the kernel (`--kernel DIR|FILE`, `--modules DIR`, or
 * nothing) into a kernel file, its config and a modules archive. What the kernel file is (its
 * format and architecture) the caller asks artifact/identify, as of every other input.
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Arch } from "../arch/arch.js";
import { configBeside } from "../artifact/kernel.js";
import { ModinfoError, readModinfo } from "../kmod/modinfo.js";
import { readModuleBytes } from "../kmod/module-file.js";
import { type ModuleFile, writeModulesCpio } from "../kmod/modules-cpio.js";
import { UserError } from "../util/errors.js";
import { bootModules, cachedKernel } from "./fetch.js";
import {
  bootFile,
  fetchedKernelDir,
  type KernelManifest,
  manifestIdentity,
  readManifest,
  type Transport,
} from "./manifest.js";

export interface BootKernel {
  kernel: string;
  /** A newc archive of modules to append to the initrd, if any. */
  modulesCpio?: string;
  /** For messages: where it came from. */
  label: string;
  /** Its build config, when known (a fetched kernel's, or config-RELEASE beside vmlinuz-RELEASE). */
  config?: string;
  /** A kernel directory's release and origin (manifest.json): what identifies it (identity.ts). */
  manifest?: { version: string; source: string };
}

export interface KernelRequest {
  /** `--kernel`: a fetched directory (with manifest.json) or a kernel image file. */
  kernel?: string;
  /** `--modules`: a directory whose .ko files (any depth) go into the VM. */
  modules?: string;
  /** The image's architecture: picks the default kernel. */
  arch: Arch;
  /** The VM's virtio transport: picks the boot modules of a fetched kernel. */
  transport: Transport;
  /** Modules to load besides the transport's boot modules (virtio_blk for disks, vsock). */
  extraModules?: readonly string[];
  /** Where a modules archive built on the fly may be written. */
  scratch: string;
}

export async function resolveKernel(r: KernelRequest): Promise<BootKernel> {
  let kernel: string;
  let modulesCpio: string | undefined;
  let label: string;
  let config: string | undefined;
  let manifest: { version: string; source: string } | undefined;
  if (r.kernel === undefined) {
    const dir = fetchedKernelDir(r.arch);
    const m = await cachedKernel(dir);
    if (!m)
      throw new UserError(
        `no ${r.arch} kernel: run slimroot kernel fetch --arch ${r.arch} (or give --kernel)`,
      );
    kernel = bootFile(dir, m);
    modulesCpio = await manifestModules(dir, m, r);
    label = `${m.version} (${dir})`;
    if (m.config) config = join(dir, m.config);
    manifest = manifestIdentity(m);
  } else {
    const st = await stat(r.kernel).catch(() => undefined);
    if (!st) throw new UserError(`--kernel ${r.kernel}: no such file or directory`);
    if (st.isDirectory()) {
      const m = await readManifest(r.kernel);
      kernel = bootFile(r.kernel, m);
      modulesCpio = await manifestModules(r.kernel, m, r);
      label = `${m.version} (${r.kernel})`;
      if (m.config) config = join(r.kernel, m.config);
      manifest = manifestIdentity(m);
    } else {
      kernel = r.kernel;
      label = r.kernel;
      config = configBeside(r.kernel);
    }
  }
  if (r.modules !== undefined) {
    modulesCpio = join(r.scratch, "modules.cpio");
    await writeModulesCpio(await modulesIn(r.modules, r.scratch), modulesCpio);
  }
  return {
    kernel,
    ...(modulesCpio ? { modulesCpio } : {}),
    label,
    ...(config ? { config } : {}),
    ...(manifest ? { manifest } : {}),
  };
}

/** The cached boot-modules archive of a kernel directory, else one made now. */
async function manifestModules(
  dir: string,
  m: KernelManifest,
  r: KernelRequest,
): Promise<string | undefined> {
  const cached = r.extraModules?.length ? undefined : m.modulesCpio?.[r.transport];
  if (cached && existsSync(join(dir, cached))) return join(dir, cached);
  const boot = await bootModules(m, r.transport, r.extraModules);
  if (boot.length === 0) return undefined;
  const out = join(r.scratch, "modules.cpio");
  await writeModulesCpio(
    boot.map((x) => ({ name: x.name, path: join(dir, x.file) })),
    out,
  );
  return out;
}

/** Every .ko (.ko.xz, .ko.zst, .ko.gz) under `dir`, decompressed into `scratch` as needed. */
async function modulesIn(dir: string, scratch: string): Promise<ModuleFile[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(
    (err: NodeJS.ErrnoException) => {
      throw new UserError(`--modules ${dir}: ${err.code === "ENOENT" ? "no such directory" : err.message}`);
    },
  );
  const found = new Map<string, ModuleFile>();
  const plainDir = join(scratch, "ko");
  await mkdir(plainDir, { recursive: true });
  for (const e of entries.sort((a, b) =>
    join(a.parentPath, a.name).localeCompare(join(b.parentPath, b.name)),
  )) {
    if (!e.isFile() || !/\.ko(\.(xz|zst|gz))?$/.test(e.name)) continue;
    const path = join(e.parentPath, e.name);
    const bytes = await readModuleBytes(path);
    let name: string;
    try {
      name = readModinfo(bytes).name ?? e.name.replace(/\.ko.*$/, "").replace(/-/g, "_");
    } catch (err) {
      if (err instanceof ModinfoError) throw new UserError(`--modules: ${path}: ${err.message}`);
      throw err;
    }
    if (found.has(name)) continue;
    let plain = path;
    if (!e.name.endsWith(".ko")) {
      plain = join(plainDir, `${name}.ko`);
      await writeFile(plain, bytes);
    }
    found.set(name, { name, path: plain });
  }
  if (found.size === 0) throw new UserError(`--modules ${dir}: no .ko files in it`);
  return [...found.values()];
}

/** The architecture of a fetched kernel directory `--kernel` names; undefined for a kernel file. */
export async function kernelDirArch(path: string): Promise<Arch | undefined> {
  const st = await stat(path).catch(() => undefined);
  if (!st) throw new UserError(`--kernel ${path}: no such file or directory`);
  return st.isDirectory() ? (await readManifest(path)).arch : undefined;
}
