/**
 * Debian's cloud kernels (and a static busybox) for the boot tests, fetched with apt and
 * unpacked into test-kernels/ under the cache root (src/util/cache-dir.ts). Idempotent: a finished unpack is marked by a JSON file,
 * and a half-done one (interrupted run) is thrown away and redone.
 */

import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { hostArch as machineArch } from "../../src/arch/arch.js";
import { candidateField, download, ensureArch, extract, qualified } from "../../src/kernel/apt.js";
import { buildKernel } from "../../src/kernel/build.js";
import { cacheRoot } from "../../src/util/cache-dir.js";

export type DebianArch = "amd64" | "arm64";

export interface DebianKernel {
  /** The kernel image: a bzImage on amd64, an arm64 `Image` on arm64. */
  kernel: string;
  /** `lib/modules/<version>` of the unpacked package (plain `.ko` files, no modules.dep). */
  modulesDir: string;
  /** The kernel release, e.g. `6.1.0-27-cloud-amd64`. */
  version: string;
}

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
// Outside the checkout, so CI's fresh clones reuse the unpacked packages.
const kernelsRoot = join(cacheRoot(), "test-kernels");

/** This machine's architecture, as the kernels and fixtures name it (src/arch's, amd64 when it has none). */
export function hostArch(): DebianArch {
  return machineArch() ?? "amd64";
}

/** `name` or `name:arch` for a package of a foreign architecture. */
const pkg = (name: string, arch: DebianArch) => qualified(name, arch, hostArch());

/** The versioned package a metapackage depends on (`linux-image-6.1.0-NN-cloud-amd64`). */
async function resolveDepends(meta: string, prefix: string): Promise<string> {
  const depends = (await candidateField(meta, "Depends")) ?? "";
  const m = depends.match(new RegExp(`(${prefix}[^\\s:,]*)`));
  if (!m?.[1]) throw new Error(`${meta}: no ${prefix}* dependency in "${depends}"`);
  return m[1];
}

/** apt-get download + dpkg -x of `packages` into `dest`, atomically (temp dir + rename). */
async function unpack(packages: string[], dest: string, marker: object): Promise<void> {
  await mkdir(kernelsRoot, { recursive: true });
  const work = await mkdtemp(join(kernelsRoot, ".tmp-"));
  try {
    const debs = join(work, "debs");
    const tree = join(work, "tree");
    await mkdir(debs);
    await mkdir(tree);
    await download(packages, debs);
    for (const deb of await readdir(debs)) {
      if (deb.endsWith(".deb")) await extract(join(debs, deb), tree);
    }
    await writeFile(join(tree, "slimroot-cache.json"), `${JSON.stringify(marker, null, 2)}\n`);
    await rm(dest, { recursive: true, force: true });
    await rename(tree, dest);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

const kernels = new Map<DebianArch, Promise<DebianKernel>>();

async function fetchKernel(arch: DebianArch): Promise<DebianKernel> {
  const dest = join(kernelsRoot, `debian-cloud-${arch}`);
  const markerPath = join(dest, "slimroot-cache.json");
  if (!existsSync(markerPath)) {
    await ensureArch(arch, hostArch());
    const versioned = await resolveDepends(pkg(`linux-image-cloud-${arch}`, arch), "linux-image-");
    const version = versioned.replace(/^linux-image-/, "");
    await unpack([pkg(versioned, arch)], dest, { package: versioned, version });
  }
  const { version } = JSON.parse(await readFile(markerPath, "utf8")) as { version: string };
  const kernel = join(dest, "boot", `vmlinuz-${version}`);
  const modulesDir = join(dest, "lib", "modules", version);
  if (!existsSync(kernel)) throw new Error(`${kernel}: missing from the unpacked package`);
  return { kernel, modulesDir, version };
}

/**
 * Debian's cloud kernel for `arch` (linux-image-cloud-<arch> and the versioned package it
 * depends on), unpacked into `.cache/kernels/debian-cloud-<arch>`.
 */
export async function debianKernel(arch: DebianArch): Promise<DebianKernel> {
  let p = kernels.get(arch);
  if (!p) {
    p = fetchKernel(arch);
    kernels.set(arch, p);
    p.catch(() => kernels.delete(arch));
  }
  return p;
}

/**
 * A static busybox for `arch`: the host's /bin/busybox when it is the host architecture and
 * present, else busybox-static:<arch> unpacked into `.cache/kernels/busybox-<arch>`.
 */
export async function debianBusybox(arch: DebianArch): Promise<string> {
  if (arch === hostArch() && existsSync("/bin/busybox")) return "/bin/busybox";
  const dest = join(kernelsRoot, `busybox-${arch}`);
  if (!existsSync(join(dest, "slimroot-cache.json"))) {
    await ensureArch(arch, hostArch());
    await unpack([pkg("busybox-static", arch)], dest, { package: "busybox-static" });
  }
  return join(dest, "bin", "busybox");
}

/**
 * slimroot's default kernel for `arch` (today's fragments), from the kernel cache: built if it
 * is missing, and waited for if another process (`npm test` builds both beside the tests) is
 * building it. Minutes of both cores on a fresh machine, so the files that call it run last.
 */
export async function slimrootKernel(arch: DebianArch): Promise<string> {
  return (await buildKernel({ arch })).dir;
}

/**
 * A kernel module of one init function (`initBody`: C statements, `<linux/delay.h>` included),
 * built in `dir` against Debian's headers for `version`: the boot tests' modules that sleep or
 * hang. `ko` is the module's path, or `missing` says why it cannot be built (the test skips).
 */
export async function buildTestModule(
  dir: string,
  version: string,
  name: string,
  initBody: string,
): Promise<{ ko: string } | { missing: string }> {
  const headers = `/usr/src/linux-headers-${version}`;
  if (!existsSync(headers))
    return {
      missing: `needs ${headers} to build the test module (apt-get install linux-headers-${version})`,
    };
  await writeFile(
    join(dir, `${name}.c`),
    [
      "#include <linux/delay.h>",
      "#include <linux/module.h>",
      `static int __init ${name}_init(void) { ${initBody} return 0; }`,
      `module_init(${name}_init);`,
      'MODULE_LICENSE("GPL");',
      "",
    ].join("\n"),
  );
  await writeFile(join(dir, "Kbuild"), `obj-m := ${name}.o\n`);
  await promisify(execFile)("make", ["-C", headers, `M=${dir}`, "modules"]);
  return { ko: join(dir, `${name}.ko`) };
}
