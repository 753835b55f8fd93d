/**
 * `slimroot kernel fetch`: Debian's cloud kernel for an architecture, cut down to what a
 * slimroot VM needs (the kernel, its config, a few modules) in a cache directory with a
 * manifest.json. Idempotent: a complete directory is reused as is.
 */
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import type { Arch } from "../arch/arch.js";
import { readModinfo } from "../kmod/modinfo.js";
import { readModuleBytes } from "../kmod/module-file.js";
import { writeModulesCpio } from "../kmod/modules-cpio.js";
import { dependencyClosure, loadOrder } from "../kmod/order.js";
import { cacheRoot } from "../util/cache-dir.js";
import { EnvironmentError } from "../util/errors.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";
import { candidateField, download, ensureArch, extract, hostDebArch, qualified } from "./apt.js";
import {
  fetchedKernelDir,
  type KernelManifest,
  MANIFEST,
  type ManifestModule,
  readManifest,
  type Transport,
} from "./manifest.js";

/**
 * Modules slimroot may load: virtio transports (mmio for microvm/virt, pci for pc) and
 * devices (net with its failover helpers, block, console, input for the Ctrl-Alt-Del stop
 * signal, rng), vsock over virtio, and the filesystems a disk image might use. Whatever
 * they depend on comes along. Names a kernel builds in are simply not found, which is fine.
 */
export const WANTED_MODULES = [
  "virtio",
  "virtio_ring",
  "virtio_mmio",
  "virtio_pci",
  "virtio_net",
  "net_failover",
  "failover",
  "virtio_blk",
  "virtio_console",
  "virtio_input",
  "virtio_rng",
  "vsock",
  "vmw_vsock_virtio_transport",
  "vmw_vsock_virtio_transport_common",
  "erofs",
  "squashfs",
  "overlay",
] as const;

/** What `slimroot run` attaches: the transport, a NIC, an RNG, and (mmio) a keyboard. */
export const BOOT_MODULES: Record<Transport, readonly string[]> = {
  mmio: ["virtio_mmio", "virtio_net", "virtio_rng", "virtio_input"],
  pci: ["virtio_pci", "virtio_net", "virtio_rng"],
};

export const modulesCpioName = (t: Transport) => `modules-${t}.cpio`;

/**
 * The modules of `m` a VM using `transport` loads at boot, dependencies first, with `extra`
 * ones for the devices a VM has beyond the usual (disks, vsock).
 */
export async function bootModules(
  m: KernelManifest,
  transport: Transport,
  extra: readonly string[] = [],
): Promise<ManifestModule[]> {
  const byName = new Map(m.modules.map((x) => [x.name, x]));
  const wanted = [...BOOT_MODULES[transport], ...extra];
  const { names } = await dependencyClosure(wanted, (n) => byName.get(n)?.depends);
  return loadOrder(names.map((n) => byName.get(n)!));
}

export interface FetchResult {
  dir: string;
  manifest: KernelManifest;
  /** False when the cache already had it. */
  fetched: boolean;
}

export interface FetchOptions {
  arch: Arch;
  /** Fetch again even if the cache has a kernel. */
  force?: boolean;
  log?: (line: string) => void;
}

/** The cached kernel directory if it is complete, else undefined. */
export async function cachedKernel(dir: string): Promise<KernelManifest | undefined> {
  if (!existsSync(join(dir, MANIFEST))) return undefined;
  try {
    const m = await readManifest(dir);
    const files = [m.kernel, ...Object.values(m.modulesCpio ?? {}), ...m.modules.map((x) => x.file)];
    return files.every((f) => existsSync(join(dir, f))) ? m : undefined;
  } catch {
    return undefined;
  }
}

export async function fetchKernel(o: FetchOptions): Promise<FetchResult> {
  const dir = fetchedKernelDir(o.arch);
  const log = o.log ?? (() => {});
  if (!o.force) {
    const m = await cachedKernel(dir);
    if (m) return { dir, manifest: m, fetched: false };
  }
  const host = await hostDebArch();
  await ensureArch(o.arch, host);
  const meta = qualified(`linux-image-cloud-${o.arch}`, o.arch, host);
  const depends = await candidateField(meta, "Depends");
  const versioned = /linux-image-[^\s,(:]+/.exec(depends ?? "")?.[0];
  if (!versioned)
    throw new EnvironmentError(`apt-cache show ${meta}: no linux-image-* dependency (${depends ?? "none"})`);
  const pkgVersion = (await candidateField(qualified(versioned, o.arch, host), "Version")) ?? "?";

  const parent = join(cacheRoot(), "kernels");
  await mkdir(parent, { recursive: true });
  const work = await mkdtemp(join(parent, `.fetch-${o.arch}-`));
  trackTempPath(work);
  try {
    const debs = join(work, "debs");
    const tree = join(work, "tree");
    const out = join(work, "out");
    await Promise.all([mkdir(debs), mkdir(tree), mkdir(join(out, "modules"), { recursive: true })]);
    log(`downloading ${versioned} ${pkgVersion} (${o.arch})`);
    await download([qualified(versioned, o.arch, host)], debs);
    for (const deb of await readdir(debs)) if (deb.endsWith(".deb")) await extract(join(debs, deb), tree);

    const boot = join(tree, "boot");
    const vmlinuz = (await readdir(boot).catch(() => [] as string[])).find((f) => f.startsWith("vmlinuz-"));
    if (!vmlinuz) throw new EnvironmentError(`${versioned}: no boot/vmlinuz-* in the package`);
    const release = vmlinuz.slice("vmlinuz-".length);
    await copyFile(join(boot, vmlinuz), join(out, vmlinuz));
    const config = `config-${release}`;
    const hasConfig = existsSync(join(boot, config));
    if (hasConfig) await copyFile(join(boot, config), join(out, config));

    const modules = await selectModules(await moduleFiles(tree, release));
    const kept: ManifestModule[] = [];
    for (const m of loadOrder(modules)) {
      const file = `modules/${m.name}.ko`;
      await writeFile(join(out, file), m.bytes);
      kept.push({ name: m.name, file, depends: m.depends });
    }
    const manifest: KernelManifest = {
      format: 1,
      arch: o.arch,
      version: release,
      source: `debian ${versioned} ${pkgVersion}`,
      kernel: vmlinuz,
      ...(hasConfig ? { config } : {}),
      modules: kept,
      modulesCpio: {},
    };
    for (const t of ["mmio", "pci"] as const) {
      const boot = await bootModules(manifest, t);
      await writeModulesCpio(
        boot.map((m) => ({ name: m.name, path: join(out, m.file) })),
        join(out, modulesCpioName(t)),
      );
      manifest.modulesCpio![t] = modulesCpioName(t);
    }
    // Written last: a directory with a manifest is complete.
    await writeFile(join(out, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    await rm(dir, { recursive: true, force: true });
    try {
      await rename(out, dir);
    } catch (err) {
      // Another fetch finished first; its result is as good as ours.
      const theirs = await cachedKernel(dir);
      if (!theirs) throw err;
      return { dir, manifest: theirs, fetched: true };
    }
    return { dir, manifest, fetched: true };
  } finally {
    await rm(work, { recursive: true, force: true });
    untrackTempPath(work);
  }
}

/** Module name -> .ko path in an unpacked kernel package (lib/ or usr/lib/modules/RELEASE). */
async function moduleFiles(tree: string, release: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for (const base of ["lib/modules", "usr/lib/modules"]) {
    const root = join(tree, base, release);
    if (!existsSync(root)) continue;
    for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || !/\.ko(\.(xz|zst|gz))?$/.test(entry.name)) continue;
      const path = join(entry.parentPath, entry.name);
      const name = entry.name.replace(/\.ko(\.(xz|zst|gz))?$/, "").replace(/-/g, "_");
      if (!found.has(name)) found.set(name, path);
      else if (relative(root, path) < relative(root, found.get(name)!)) found.set(name, path);
    }
  }
  return found;
}

interface LoadedModule {
  name: string;
  depends: string[];
  bytes: Buffer;
}

async function selectModules(files: Map<string, string>): Promise<LoadedModule[]> {
  const loaded = new Map<string, LoadedModule>();
  const { names } = await dependencyClosure(WANTED_MODULES, async (name) => {
    const path = files.get(name);
    if (!path) return undefined;
    const bytes = await readModuleBytes(path);
    const info = readModinfo(bytes);
    loaded.set(name, { name: info.name ?? name, depends: info.depends, bytes });
    return info.depends;
  });
  return names.map((n) => loaded.get(n)!);
}
