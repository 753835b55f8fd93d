/**
 * `slimroot kernel build`: a minimal microVM kernel from Debian's linux-source-6.1 (or any
 * kernel tree), `tinyconfig` plus slimroot's fragments (src/kernel/config/), everything built
 * in. Cached by source version, fragments, architecture and compiler; a cache entry holds the
 * images, the .config, the build log, manifest.json and the object tree (build/) that
 * `--embed` relinks from. Built in a temp directory and renamed: an interrupted build leaves
 * no entry.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { dirname, join, resolve } from "node:path";
import { ARCH, type Arch, hostArch } from "../arch/arch.js";
import { PACKAGE_ROOT } from "../pipeline/init-binary.js";
import { cacheRoot } from "../util/cache-dir.js";
import { EnvironmentError, UserError } from "../util/errors.js";
import { readInputText } from "../util/input-file.js";
import { withLock } from "../util/lock.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";
import { candidateField, download, extract } from "./apt.js";
import { cachedKernel } from "./fetch.js";
import { type KernelManifest, MANIFEST } from "./manifest.js";

/** Debian's kernel source package. */
export const SOURCE_PACKAGE = "linux-source-6.1";

/** slimroot's fragments: the common one, then the architecture's. */
const CONFIG_DIR = join(PACKAGE_ROOT, "src", "kernel", "config");
export const fragmentFiles = (arch: Arch) => [
  join(CONFIG_DIR, "microvm.config"),
  join(CONFIG_DIR, `microvm-${arch}.config`),
];

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

/** One `NAME=value` or `# NAME is not set` line of a config or fragment. */
export interface ConfigSetting {
  name: string;
  /** "n" for `is not set`. */
  value: string;
}

export function parseConfig(text: string): ConfigSetting[] {
  const out: ConfigSetting[] = [];
  for (const line of text.split("\n")) {
    const set = /^(CONFIG_\w+)=(.*)$/.exec(line.trim());
    if (set) out.push({ name: set[1]!, value: set[2]! });
    const unset = /^# (CONFIG_\w+) is not set$/.exec(line.trim());
    if (unset) out.push({ name: unset[1]!, value: "n" });
  }
  return out;
}

/** The settings of `fragment` that `config` (a resulting .config) does not have. */
export function missingSettings(fragment: readonly ConfigSetting[], config: string): ConfigSetting[] {
  const have = new Map(parseConfig(config).map((s) => [s.name, s.value]));
  return fragment.filter((s) => (have.get(s.name) ?? "n") !== s.value);
}

/** Runs a command with its output appended to `log`; rejects naming the log on failure. */
export function runLogged(
  cmd: string,
  args: readonly string[],
  o: { cwd?: string; log: string; env?: NodeJS.ProcessEnv; onLine?: (line: string) => void },
): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const out = createWriteStream(o.log, { flags: "a" });
    out.write(`$ ${cmd} ${args.join(" ")}\n`);
    const child = spawn(cmd, args, {
      cwd: o.cwd,
      env: { ...process.env, ...o.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let partial = "";
    const onData = (d: Buffer) => {
      out.write(d);
      if (!o.onLine) return;
      const lines = (partial + d.toString()).split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) o.onLine(l);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", (err: NodeJS.ErrnoException) => {
      out.end();
      reject(
        new EnvironmentError(
          err.code === "ENOENT" ? `${cmd} not found (apt-get install build-essential)` : err.message,
        ),
      );
    });
    child.on("close", (code, signal) => {
      out.end(() => {
        if (code === 0) resolvePromise();
        else
          reject(
            new EnvironmentError(
              `${cmd} ${args.slice(-1)[0]} failed (${signal ?? `exit ${code}`}); see the log: ${o.log}`,
            ),
          );
      });
    });
  });
}

export function capture(cmd: string, args: readonly string[], cwd?: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d;
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d;
    });
    child.on("error", (e: NodeJS.ErrnoException) =>
      reject(new EnvironmentError(e.code === "ENOENT" ? `${cmd} not found` : e.message)),
    );
    child.on("close", (code) =>
      code === 0
        ? resolvePromise(out.trim())
        : reject(new EnvironmentError(`${cmd} ${args.join(" ")}: ${err.trim().split("\n").pop() ?? code}`)),
    );
  });
}

/** `CROSS_COMPILE=` for building `arch` here ("" when native). */
export function crossCompile(arch: Arch): string {
  return hostArch() === arch ? "" : `${ARCH[arch].gnuTriplet}-`;
}

export function makeArgs(arch: Arch, obj: string): string[] {
  const cross = crossCompile(arch);
  return [`O=${obj}`, `ARCH=${ARCH[arch].kernelArch}`, ...(cross ? [`CROSS_COMPILE=${cross}`] : [])];
}

async function compilerVersion(arch: Arch): Promise<string> {
  const gcc = `${crossCompile(arch)}gcc`;
  try {
    return (await capture(gcc, ["--version"])).split("\n")[0]!;
  } catch {
    const pkg = crossCompile(arch) ? `gcc-${ARCH[arch].gnuTriplet}` : "build-essential";
    throw new EnvironmentError(
      `${gcc} not found: apt-get install ${pkg} flex bison bc libelf-dev libssl-dev`,
    );
  }
}

interface Source {
  tree: string;
  /** For the manifest and the cache key, e.g. `debian linux-source-6.1 6.1.192-3`. */
  label: string;
}

/** Debian's kernel source, extracted once into the cache (apt-get download, tar). */
async function debianSource(progress: (phase: string) => void): Promise<Source> {
  const version = await candidateField(SOURCE_PACKAGE, "Version");
  if (!version)
    throw new EnvironmentError(`apt-cache show ${SOURCE_PACKAGE}: no such package (apt-get update?)`);
  const label = `debian ${SOURCE_PACKAGE} ${version}`;
  const parent = join(cacheRoot(), "kernel-src");
  const tree = join(parent, `${SOURCE_PACKAGE}_${version.replace(/[^\w.+-]/g, "_")}`);
  if (existsSync(join(tree, "Makefile"))) return { tree, label };
  await mkdir(parent, { recursive: true });
  const work = await mkdtemp(join(parent, ".extract-"));
  trackTempPath(work);
  try {
    progress(`downloading ${SOURCE_PACKAGE} ${version}`);
    await download([SOURCE_PACKAGE], work);
    const deb = (await readdir(work)).find((f) => f.endsWith(".deb"));
    if (!deb) throw new EnvironmentError(`apt-get download ${SOURCE_PACKAGE}: no .deb`);
    await extract(join(work, deb), join(work, "deb"));
    const tarball = join(work, "deb", "usr", "src", `${SOURCE_PACKAGE}.tar.xz`);
    if (!existsSync(tarball)) throw new EnvironmentError(`${deb}: no usr/src/${SOURCE_PACKAGE}.tar.xz in it`);
    progress(`extracting ${SOURCE_PACKAGE}`);
    await capture("tar", ["-xf", tarball, "-C", work]);
    const top = join(work, SOURCE_PACKAGE);
    if (!existsSync(join(top, "Makefile")))
      throw new EnvironmentError(`${tarball}: no ${SOURCE_PACKAGE}/Makefile`);
    await rename(top, tree).catch(async (err) => {
      if (!existsSync(join(tree, "Makefile"))) throw err; // else another build extracted it first
    });
    return { tree, label };
  } finally {
    await rm(work, { recursive: true, force: true });
    untrackTempPath(work);
  }
}

/** A user's kernel tree: must be a clean tree (out-of-tree builds refuse a configured one). */
async function userSource(dir: string): Promise<Source> {
  const tree = resolve(dir);
  if (!existsSync(join(tree, "Makefile")) || !existsSync(join(tree, "Kconfig")))
    throw new UserError(`--source ${dir}: not a kernel source tree (no Makefile and Kconfig)`);
  if (existsSync(join(tree, ".config")))
    throw new UserError(`--source ${dir}: the tree is configured (.config); run make mrproper in it first`);
  const version = await capture("make", ["-s", "kernelversion"], tree);
  const [major, minor] = version.split(".").map(Number);
  if (!(major! > 5 || (major === 5 && minor! >= 10)))
    throw new UserError(`--source ${dir}: Linux ${version}; slimroot needs 5.10 or later`);
  return { tree, label: `${tree} ${version}` };
}

/** The cache directory name of a build. */
export function buildKey(parts: {
  source: string;
  fragments: readonly string[];
  arch: Arch;
  compiler: string;
}) {
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 16);
}

export async function buildKernel(o: KernelBuildOptions): Promise<KernelBuildResult> {
  const progress = o.progress ?? (() => {});
  const compiler = await compilerVersion(o.arch);
  const ours = await Promise.all(fragmentFiles(o.arch).map((f) => readFile(f, "utf8")));
  const theirs: string[] = [];
  for (const f of o.fragments ?? []) {
    const text = await readInputText(f, `--config-fragment ${f}`);
    if (parseConfig(text).length === 0) throw new UserError(`--config-fragment ${f}: no CONFIG_ lines in it`);
    theirs.push(text);
  }
  const source = o.source ? await userSource(o.source) : await debianSource(progress);
  const key = buildKey({ source: source.label, fragments: [...ours, ...theirs], arch: o.arch, compiler });
  const parent = join(cacheRoot(), "kernels");
  const dir = join(parent, `slimroot-${o.arch}-${key}`);
  if (!o.force) {
    const m = await cachedKernel(dir);
    if (m) return { dir, manifest: m, built: false };
  }
  await mkdir(parent, { recursive: true });
  // One build per kernel at a time: a second process waits for the first and reuses its result.
  return withLock(
    `${dir}.lock`,
    async () => {
      const m = o.force ? undefined : await cachedKernel(dir);
      return m ? { dir, manifest: m, built: false } : compile(o, source, ours, theirs, dir);
    },
    (owner) => progress(`waiting for pid ${owner}, which is building this kernel`),
  );
}

async function compile(
  o: KernelBuildOptions,
  source: Source,
  ours: readonly string[],
  theirs: readonly string[],
  dir: string,
): Promise<KernelBuildResult> {
  const progress = o.progress ?? (() => {});
  const compiler = await compilerVersion(o.arch);
  const work = await mkdtemp(join(dirname(dir), `.build-${o.arch}-`));
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
    await make(["tinyconfig"]);
    const dotConfig = join(obj, ".config");
    await writeFile(
      dotConfig,
      `${await readFile(dotConfig, "utf8")}\n${ours.join("\n")}\n${theirs.join("\n")}\n`,
    );
    await make(["olddefconfig"]);
    const config = await readFile(dotConfig, "utf8");
    // kconfig drops what a dependency rules out without a word: check what the init needs.
    const required = ours.flatMap(parseConfig);
    const lost = missingSettings(required, config);
    if (lost.length) {
      const by = theirs.length ? "the config fragment turns off" : "the configuration lost";
      throw new UserError(
        `${o.fragments?.join(", ") ?? "kernel config"}: ${by} what slimroot's init needs: ${lost
          .map((s) => `${s.name}=${s.value}`)
          .join(" ")}`,
      );
    }
    const ignored = missingSettings(theirs.flatMap(parseConfig), config);
    if (ignored.length)
      progress(
        `note: kconfig did not take ${ignored.map((s) => `${s.name}=${s.value}`).join(" ")} (dependencies)`,
      );

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
      source: `slimroot kernel build from ${source.label} (${compiler})`,
      kernel: TARGET[o.arch].name,
      config: CONFIG_FILE,
      modules: [],
      ...(o.arch === "amd64" ? { vmlinux: "vmlinux" } : {}),
      build: { dir: BUILD_DIR, source: source.tree, log: LOG_FILE },
    };
    await writeFile(join(work, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    await rm(dir, { recursive: true, force: true });
    try {
      await rename(work, dir);
    } catch (err) {
      const done = await cachedKernel(dir);
      if (!done) throw err;
      return { dir, manifest: done, built: true };
    }
    untrackTempPath(work);
    return { dir, manifest, built: true };
  } catch (err) {
    // A refused configuration says why in its message; a failed make points at this log.
    if (!(err instanceof UserError) && existsSync(log)) await copyFile(log, keptLog(o.arch)).catch(() => {});
    throw err;
  } finally {
    if (existsSync(work)) await rm(work, { recursive: true, force: true });
    untrackTempPath(work);
  }
}

/** Where the log of a failed build is kept (the work directory goes). */
export function keptLog(arch: Arch): string {
  return join(cacheRoot(), "kernels", `last-failed-build-${arch}.log`);
}
