/**
 * `slimroot kernel build`: a minimal microVM kernel from Debian's linux-source-6.1 (or any
 * kernel tree), `tinyconfig` plus slimroot's fragments (src/kernel/config/), everything built
 * in. Cached by content: the source (the .deb's sha256, or a --source tree's content hash),
 * the fragments, the architecture and the toolchain's versions; make runs with a clean
 * environment so nothing else can change the result. A cache entry holds the images, the
 * .config, the build log, manifest.json and the object tree (build/) that `--embed` relinks
 * from. It is a symlink to a directory in .store/: a build (also --force) fills a new
 * directory and swaps the link, so an interrupted build leaves no entry and a reader that
 * resolved the old directory keeps it.
 *
 * This file is the build's order; each step is a module: the source (source.ts: apt or a
 * --source tree), the configuration (kconfig.ts: fragments merged by the kernel's own
 * merge_config.sh, then checked), the cache and its entries (cache.ts; one build per entry at a
 * time through util/lock), and kbuild's runs (make.ts).
 */
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { basename, dirname, join } from "node:path";
import type { Arch } from "../arch/arch.js";
import { cacheRoot } from "../util/cache-dir.js";
import { EnvironmentError, UserError } from "../util/errors.js";
import { withLock } from "../util/lock.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";
import { buildKey, keptLog, pruneStore, publish, STORE } from "./cache.js";
import { cachedKernel } from "./fetch.js";
import { configure, fragmentFiles, readUserFragments, type UserFragment } from "./kconfig.js";
import { capture, KERNEL_CFLAGS, makeArgs, runLogged, toolchain } from "./make.js";
import { type KernelManifest, MANIFEST } from "./manifest.js";
import { debianSource, type Source, userSource } from "./source.js";

/** The kernel's make target and where it leaves the image, per architecture. */
export const TARGET: Record<Arch, { make: string; image: string; name: string }> = {
  amd64: { make: "bzImage", image: "arch/x86/boot/bzImage", name: "bzImage" },
  arm64: { make: "Image", image: "arch/arm64/boot/Image", name: "Image" },
};

/** Files of a built kernel directory besides the manifest. */
export const BUILD_DIR = "build";
export const CONFIG_FILE = "config";
export const LOG_FILE = "build.log";

/** Objects a full build compiles, measured on this tree: the progress bar's 100%. */
const EXPECTED_OBJECTS: Record<Arch, number> = { amd64: 1103, arm64: 985 };

export interface KernelBuildOptions {
  arch: Arch;
  /** A kernel source tree to use instead of Debian's package. */
  source?: string;
  /** The user's config fragments, applied after slimroot's. */
  fragments?: readonly string[];
  force?: boolean;
  /** Phase and, while compiling, a percentage. */
  progress?: (phase: string, percent?: number) => void;
}

export interface KernelBuildResult {
  dir: string;
  manifest: KernelManifest;
  built: boolean;
}

export async function buildKernel(o: KernelBuildOptions): Promise<KernelBuildResult> {
  const progress = o.progress ?? (() => {});
  // The user's fragments first: a refused option stops here, before any download or compile.
  const theirs = await readUserFragments(o.fragments ?? [], o.arch);
  const toolchainVersions = await toolchain(o.arch);
  const ours = await Promise.all(fragmentFiles(o.arch).map((f) => readFile(f, "utf8")));
  const source = o.source ? await userSource(o.source, progress) : await debianSource(progress);
  const key = buildKey({
    source: source.content,
    fragments: [...ours, ...theirs.map((f) => f.text)],
    arch: o.arch,
    toolchain: toolchainVersions,
    cflags: KERNEL_CFLAGS[o.arch],
  });
  const parent = join(cacheRoot(), "kernels");
  const dir = join(parent, `slimroot-${o.arch}-${key}`);
  if (!o.force) {
    const m = await cachedKernel(dir);
    if (m) return { dir, manifest: m, built: false };
  }
  await mkdir(join(parent, STORE), { recursive: true });
  // One build per kernel at a time: a second process waits for the first and reuses its result.
  return withLock(
    `${dir}.lock`,
    async () => {
      const m = o.force ? undefined : await cachedKernel(dir);
      if (m) return { dir, manifest: m, built: false };
      await pruneStore(parent);
      return compile(o, source, toolchainVersions, ours, theirs, dir);
    },
    (owner) => progress(`waiting for pid ${owner}, which is building this kernel`),
  );
}

async function compile(
  o: KernelBuildOptions,
  source: Source,
  toolchainVersions: string,
  ours: readonly string[],
  theirs: readonly UserFragment[],
  dir: string,
): Promise<KernelBuildResult> {
  const progress = o.progress ?? (() => {});
  const work = await mkdtemp(join(dirname(dir), STORE, `${basename(dir)}-`));
  trackTempPath(work);
  const log = join(work, LOG_FILE);
  const obj = join(work, BUILD_DIR);
  try {
    await mkdir(obj);
    const make = (args: string[], onLine?: (l: string) => void) =>
      runLogged("make", ["-C", source.tree, ...makeArgs(o.arch, obj), ...args], {
        log,
        ...(onLine ? { onLine } : {}),
      }).catch((err: Error) => {
        // The log is about to be removed with the work directory: keep it where it can be read.
        throw new EnvironmentError(err.message.replace(log, keptLog(o.arch)));
      });

    progress("configuring");
    const dotConfig = await configure(o, source.tree, { obj, work, log }, make, ours, theirs);

    const jobs = availableParallelism();
    let compiled = 0;
    let shown = 0;
    progress("compiling", 0);
    await make([`-j${jobs}`, TARGET[o.arch].make], (line) => {
      if (!/^\s+(CC|AS)\s/.test(line)) return;
      compiled++;
      const pct = Math.min(99, Math.floor((100 * compiled) / EXPECTED_OBJECTS[o.arch]));
      if (pct !== shown) {
        shown = pct;
        progress("compiling", pct);
      }
    });
    progress("compiling", 100);
    const release = (
      await capture("make", ["-s", "-C", source.tree, ...makeArgs(o.arch, obj), "kernelrelease"])
    ).trim();

    await copyFile(join(obj, TARGET[o.arch].image), join(work, TARGET[o.arch].name));
    if (o.arch === "amd64") await copyFile(join(obj, "vmlinux"), join(work, "vmlinux"));
    await copyFile(dotConfig, join(work, CONFIG_FILE));
    const manifest: KernelManifest = {
      format: 1,
      arch: o.arch,
      version: release,
      source: `slimroot kernel build from ${source.label} (${toolchainVersions})`,
      kernel: TARGET[o.arch].name,
      config: CONFIG_FILE,
      modules: [],
      ...(o.arch === "amd64" ? { vmlinux: "vmlinux" } : {}),
      build: { dir: BUILD_DIR, source: source.tree, log: LOG_FILE },
    };
    await writeFile(join(work, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    await publish(dir, work);
    untrackTempPath(work);
    return { dir, manifest, built: true };
  } catch (err) {
    // A refused configuration says why in its message; a failed make points at this log.
    if (!(err instanceof UserError) && existsSync(log)) await copyFile(log, keptLog(o.arch)).catch(() => {});
    // A failed build's directory goes; a published one is the entry's now.
    await rm(work, { recursive: true, force: true });
    untrackTempPath(work);
    throw err;
  }
}
