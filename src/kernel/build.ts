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
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import {
  copyFile,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import { availableParallelism } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { ARCH, type Arch, hostArch } from "../arch/arch.js";
import { PACKAGE_ROOT } from "../guest/init-binary.js";
import { cacheRoot } from "../util/cache-dir.js";
import { EnvironmentError, UserError } from "../util/errors.js";
import { withLock } from "../util/lock.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";
import { download, extract } from "./apt.js";
import { cachedKernel } from "./fetch.js";
import { checkFragment, ownedInConfig, readFragment } from "./fragment.js";
import { type KernelManifest, MANIFEST } from "./manifest.js";
import { lockedOptions } from "./requirements.js";
import { fileSha256, treeHash } from "./tree-hash.js";

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
      env: { ...buildEnv(), ...o.env },
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

/**
 * The environment kbuild runs in: only what finds the tools and a scratch directory. The
 * user's KCFLAGS, CC, LLVM, KBUILD_*, KCONFIG_*, ARCH... would change what is built without
 * changing the cache key.
 */
export function buildEnv(): NodeJS.ProcessEnv {
  const keep = ["PATH", "HOME", "TMPDIR"] as const;
  const env: NodeJS.ProcessEnv = { LC_ALL: "C" };
  for (const k of keep) if (process.env[k] !== undefined) env[k] = process.env[k];
  return env;
}

export function capture(cmd: string, args: readonly string[], cwd?: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd, env: buildEnv(), stdio: ["ignore", "pipe", "pipe"] });
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

/** The versions of the tools whose output ends up in the kernel: part of the cache key. */
async function toolchain(arch: Arch): Promise<string> {
  const tools = [`${crossCompile(arch)}gcc`, `${crossCompile(arch)}ld`, "make"];
  try {
    const lines = await Promise.all(
      tools.map(async (t) => (await capture(t, ["--version"])).split("\n")[0]!),
    );
    return lines.join("; ");
  } catch {
    const pkg = crossCompile(arch) ? `gcc-${ARCH[arch].gnuTriplet}` : "build-essential";
    throw new EnvironmentError(
      `${tools.join(", ")}: not all found: apt-get install ${pkg} flex bison bc libelf-dev libssl-dev`,
    );
  }
}

interface Source {
  tree: string;
  /** For the manifest, e.g. `debian linux-source-6.1 6.1.192-3`. */
  label: string;
  /** What the tree holds, for the cache key: the .deb's sha256 or the tree's content hash. */
  content: string;
}

interface ExtractedSource {
  version: string;
  sha256: string;
}

/**
 * Debian's kernel source, extracted once into the cache (apt-get download, tar) and then used
 * as is: apt is asked only when no extracted tree is there, so neither an `apt-get update`
 * (a new candidate) nor missing package lists make a cached kernel unusable. Remove
 * <cache>/kernel-src to take Debian's newest.
 */
export async function debianSource(progress: (phase: string) => void): Promise<Source> {
  const parent = join(cacheRoot(), "kernel-src");
  const source = (tree: string, e: ExtractedSource): Source => ({
    tree,
    label: `debian ${SOURCE_PACKAGE} ${e.version}`,
    content: `deb sha256 ${e.sha256}`,
  });
  const found: { tree: string; e: ExtractedSource }[] = [];
  for (const f of await readdir(parent).catch(() => [] as string[])) {
    if (!f.startsWith(`${SOURCE_PACKAGE}_`) || !f.endsWith(".json")) continue;
    const tree = join(parent, f.slice(0, -".json".length));
    const e = JSON.parse(await readFile(join(parent, f), "utf8").catch(() => "{}")) as ExtractedSource;
    if (e.sha256 && e.version && existsSync(join(tree, "Makefile"))) found.push({ tree, e });
  }
  const newest = found.sort((a, b) => (a.tree < b.tree ? -1 : 1)).at(-1);
  if (newest) return source(newest.tree, newest.e);
  await mkdir(parent, { recursive: true });
  const work = await mkdtemp(join(parent, ".extract-"));
  trackTempPath(work);
  try {
    progress(`downloading ${SOURCE_PACKAGE}`);
    await download([SOURCE_PACKAGE], work);
    const deb = (await readdir(work)).find((f) => f.endsWith(".deb"));
    if (!deb) throw new EnvironmentError(`apt-get download ${SOURCE_PACKAGE}: no .deb`);
    // The name is the package's own: linux-source-6.1_6.1.192-3_all.deb.
    const version = decodeURIComponent(deb.split("_")[1] ?? "unknown");
    const sha256 = await fileSha256(join(work, deb));
    await extract(join(work, deb), join(work, "deb"));
    const tarball = join(work, "deb", "usr", "src", `${SOURCE_PACKAGE}.tar.xz`);
    if (!existsSync(tarball)) throw new EnvironmentError(`${deb}: no usr/src/${SOURCE_PACKAGE}.tar.xz in it`);
    progress(`extracting ${SOURCE_PACKAGE} ${version}`);
    await capture("tar", ["-xf", tarball, "-C", work]);
    const top = join(work, SOURCE_PACKAGE);
    if (!existsSync(join(top, "Makefile")))
      throw new EnvironmentError(`${tarball}: no ${SOURCE_PACKAGE}/Makefile`);
    const name = `${SOURCE_PACKAGE}_${version.replace(/[^\w.+-]/g, "_")}_${sha256.slice(0, 16)}`;
    const tree = join(parent, name);
    const e: ExtractedSource = { version, sha256 };
    await rename(top, tree).catch(async (err) => {
      if (!existsSync(join(tree, "Makefile"))) throw err; // else another build extracted it first
    });
    // Written last: a tree with its record is complete.
    await writeFile(join(work, "record.json"), `${JSON.stringify(e)}\n`);
    await rename(join(work, "record.json"), `${tree}.json`);
    return source(tree, e);
  } finally {
    await rm(work, { recursive: true, force: true });
    untrackTempPath(work);
  }
}

/** A user's kernel tree: must be a clean tree (out-of-tree builds refuse a configured one). */
async function userSource(dir: string, progress: (phase: string) => void): Promise<Source> {
  const tree = resolve(dir);
  if (!existsSync(join(tree, "Makefile")) || !existsSync(join(tree, "Kconfig")))
    throw new UserError(`--source ${dir}: not a kernel source tree (no Makefile and Kconfig)`);
  if (existsSync(join(tree, ".config")))
    throw new UserError(`--source ${dir}: the tree is configured (.config); run make mrproper in it first`);
  const version = await capture("make", ["-s", "kernelversion"], tree);
  const [major, minor] = version.split(".").map(Number);
  if (!(major! > 5 || (major === 5 && minor! >= 10)))
    throw new UserError(`--source ${dir}: Linux ${version}; slimroot needs 5.10 or later`);
  return { tree, label: `${tree} ${version}`, content: `tree sha256 ${await treeHash(tree, progress)}` };
}

/** The cache directory name of a build. */
export function buildKey(parts: {
  source: string;
  fragments: readonly string[];
  arch: Arch;
  toolchain: string;
}) {
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 16);
}

/** A user's fragment, checked (fragment.ts) and kept with its name for messages. */
interface UserFragment {
  file: string;
  text: string;
  settings: ConfigSetting[];
}

export async function buildKernel(o: KernelBuildOptions): Promise<KernelBuildResult> {
  const progress = o.progress ?? (() => {});
  // The user's fragments first: a refused option stops here, before any download or compile.
  const theirs: UserFragment[] = [];
  for (const file of o.fragments ?? []) {
    const text = await readFragment(file);
    theirs.push({ file, text, settings: checkFragment(file, text, o.arch) });
  }
  const toolchainVersions = await toolchain(o.arch);
  const ours = await Promise.all(fragmentFiles(o.arch).map((f) => readFile(f, "utf8")));
  const source = o.source ? await userSource(o.source, progress) : await debianSource(progress);
  const key = buildKey({
    source: source.content,
    fragments: [...ours, ...theirs.map((f) => f.text)],
    arch: o.arch,
    toolchain: toolchainVersions,
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

/** Where entries' directories live; `kernels/slimroot-ARCH-KEY` is a symlink into it. */
const STORE = ".store";
/** A replaced directory stays this long for the readers that resolved it (embed's copy). */
const RETIRED_KEEP_MS = 60 * 60_000;

/** Points the entry `dir` at `target` (in the store) in one rename; marks the old target retired. */
export async function publish(dir: string, target: string): Promise<void> {
  const old = await readlink(dir).catch(() => undefined);
  const link = `${dir}.${process.pid}.link`;
  await rm(link, { force: true });
  await symlink(join(STORE, basename(target)), link);
  // A plain directory from an older slimroot cannot be renamed over: set it aside first.
  if (
    await lstat(dir).then(
      (st) => st.isDirectory(),
      () => false,
    )
  )
    await rename(dir, join(dirname(target), `${basename(dir)}-old-${Date.now()}`));
  await rename(link, dir);
  if (old) await writeFile(join(dirname(dir), old, "RETIRED"), `${Date.now()}\n`).catch(() => {});
}

/** Removes retired store directories older than RETIRED_KEEP_MS and unlinked ones of dead builds. */
async function pruneStore(parent: string): Promise<void> {
  const store = join(parent, STORE);
  const linked = new Set<string>();
  for (const e of await readdir(parent)) {
    const t = await readlink(join(parent, e)).catch(() => undefined);
    if (t) linked.add(basename(t));
  }
  for (const e of await readdir(store).catch(() => [] as string[])) {
    if (linked.has(e)) continue;
    const retired = Number(await readFile(join(store, e, "RETIRED"), "utf8").catch(() => "NaN"));
    const old = /-old-(\d+)$/.exec(e);
    const since = old ? Number(old[1]) : retired;
    if (Date.now() - since > RETIRED_KEEP_MS) await rm(join(store, e), { recursive: true, force: true });
  }
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
    await make(["tinyconfig"]);
    const dotConfig = join(obj, ".config");
    // The kernel's own merge: later fragments win, and it says which values they redefine.
    const frags = join(work, "fragments");
    await mkdir(frags);
    const texts = [...ours, ...theirs.map((f) => f.text)];
    const files = texts.map((_, i) => join(frags, `${i}.config`));
    await Promise.all(files.map((f, i) => writeFile(f, texts[i]!)));
    await runLogged(
      "sh",
      [join(source.tree, "scripts", "kconfig", "merge_config.sh"), "-m", "-O", obj, dotConfig, ...files],
      { cwd: work, log },
    );
    await make(["olddefconfig"]);
    const config = await readFile(dotConfig, "utf8");
    // kconfig drops what a dependency rules out without a word: check the table of kernel
    // requirements (a user's fragment may turn off anything else of slimroot's defaults).
    const required = [...lockedOptions(o.arch).keys()].map((name) => ({ name, value: "y" }));
    const lost = missingSettings(required, config);
    if (lost.length) {
      const by = theirs.length ? "the config fragment turns off" : "the configuration lost";
      throw new UserError(
        `${theirs.map((f) => f.file).join(", ") || "kernel config"}: ${by} what slimroot needs: ${lost
          .map((s) => `${s.name}=${s.value}`)
          .join(" ")}`,
      );
    }
    // A --source tree's Kconfig could default what a fragment may not set.
    const owned = ownedInConfig(config);
    if (owned.length)
      throw new UserError(
        `${o.source ?? source.tree}: its configuration sets what is slimroot's: ${owned.join(" ")}`,
      );
    const ignored = missingSettings(
      theirs.flatMap((f) => f.settings),
      config,
    );
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

/** Where the log of a failed build is kept (the work directory goes). */
export function keptLog(arch: Arch): string {
  return join(cacheRoot(), "kernels", `last-failed-build-${arch}.log`);
}
