/**
 * The files an image's executables need to start: their ELF interpreter and shared
 * libraries, found the way ld.so would find them inside the image, without running anything.
 */
import { posix } from "node:path";
import { DEFAULT_PATH } from "../guest/layout.js";
import { type ImageFs, type ResolvedPath, resolvePath } from "../tree/image-fs.js";
import {
  DF_1_NODEFLIB,
  ElfError,
  type ElfFile,
  EM_386,
  EM_AARCH64,
  EM_ARM,
  EM_LOONGARCH,
  EM_PPC64,
  EM_RISCV,
  EM_S390,
  EM_X86_64,
  elfMachineName,
  isElf,
  parseElf,
} from "./elf.js";
import {
  type LdCacheEntry,
  lookupLdCache,
  muslArch,
  parseLdCache,
  readLdSoConf,
  readMuslPath,
} from "./ldconfig.js";
import { envCommand, parseShebang, type Shebang } from "./shebang.js";

export interface ClosureOptions {
  /** The target's e_machine (EM_X86_64, EM_AARCH64, ...); other objects are passed over. */
  machine: number;
  elfClass: 1 | 2;
  /** The image's environment ("NAME=value"): LD_LIBRARY_PATH, LD_PRELOAD and PATH count. */
  env?: string[];
}

export interface Closure {
  /** Absolute image path -> why it is needed, roots and every symlink on the way included. */
  files: Map<string, string>;
  /** Libraries and interpreters not found, and files that could not be read. */
  warnings: string[];
}

/** Resolves `roots` (absolute image paths: executables, scripts, libraries) to their closure. */
export async function resolveClosure(fs: ImageFs, roots: string[], opts: ClosureOptions): Promise<Closure> {
  return closureSession(fs, opts)(roots);
}

/**
 * One resolver for many calls over the same image: the loader cache, ld.so.conf and every
 * parsed object are read once. Each call returns what it found that earlier calls had not
 * (a caller that keeps every result loses nothing), its roots always included.
 */
export function closureSession(fs: ImageFs, opts: ClosureOptions): (roots: string[]) => Promise<Closure> {
  const r = new Resolver(fs, opts);
  let filesSeen = 0;
  let warningsSeen = 0;
  return async (roots) => {
    for (const root of roots) await r.root(root, "root", 0);
    const files = new Map([...r.files].slice(filesSeen));
    const warnings = [...r.warnings].slice(warningsSeen);
    filesSeen = r.files.size;
    warningsSeen = r.warnings.size;
    return { files, warnings };
  };
}

export const GLIBC_CACHE = "/etc/ld.so.cache";
const GLIBC_PRELOAD = "/etc/ld.so.preload";
/** Files are parsed from this much of their start, and read in full only when that is short. */
const HEAD_BYTES = 4 << 20;
/** Linux gives up after this many nested #! interpreters (ELOOP). */
const MAX_INTERPRETER_DEPTH = 5;

/** Debian's multiarch directory names, searched by its ld.so before /lib and /usr/lib. */
function multiarch(machine: number, elfClass: 1 | 2): string | undefined {
  const is64 = elfClass === 2;
  switch (machine) {
    case EM_X86_64:
      return is64 ? "x86_64-linux-gnu" : "x86_64-linux-gnux32";
    case EM_AARCH64:
      return "aarch64-linux-gnu";
    case EM_386:
      return "i386-linux-gnu";
    case EM_ARM:
      return "arm-linux-gnueabihf";
    case EM_RISCV:
      return is64 ? "riscv64-linux-gnu" : undefined;
    case EM_PPC64:
      return "powerpc64le-linux-gnu";
    case EM_S390:
      return is64 ? "s390x-linux-gnu" : undefined;
    case EM_LOONGARCH:
      return "loongarch64-linux-gnu";
    default:
      return undefined;
  }
}

/**
 * ld.so's built-in directories. Distributions differ (Debian: multiarch then /lib, /usr/lib;
 * Fedora: /lib64, /usr/lib64), so this is their union, multiarch first; a library of another
 * class that lives in one of them is passed over like any wrong-class file.
 */
export function defaultLibraryDirs(machine: number, elfClass: 1 | 2): string[] {
  const triplet = multiarch(machine, elfClass);
  return [
    ...(triplet ? [`/lib/${triplet}`, `/usr/lib/${triplet}`] : []),
    ...(elfClass === 2 ? ["/lib64", "/usr/lib64"] : []),
    "/lib",
    "/usr/lib",
  ];
}

/** AT_PLATFORM as the kernel reports it, which ld.so substitutes for $PLATFORM. */
function platformOf(machine: number): string | undefined {
  switch (machine) {
    case EM_X86_64:
      return "x86_64";
    case EM_AARCH64:
      return "aarch64";
    case EM_386:
      return "i686";
    default:
      return undefined;
  }
}

/**
 * ld.so's $LIB is the directory glibc was built to live in: "lib64" upstream and on Fedora,
 * "lib/x86_64-linux-gnu" on Debian. The interpreter's real directory tells which.
 */
function dstLibFor(interpreterRealPath: string | undefined, elfClass: 1 | 2): string {
  const m =
    interpreterRealPath &&
    /^\/(?:usr\/)?(lib[^/]*(?:\/[^/]+-linux-[^/]+)?)\/[^/]+$/.exec(interpreterRealPath);
  return m ? m[1]! : elfClass === 2 ? "lib64" : "lib";
}

/** Dynamic string tokens ld.so knows: $NAME or ${NAME}, NAME not followed by an identifier character. */
function expandDst(s: string, vars: Record<string, string | undefined>): string | undefined {
  let out = "";
  let i = 0;
  for (;;) {
    const at = s.indexOf("$", i);
    if (at < 0) return out + s.slice(i);
    out += s.slice(i, at);
    let matched = false;
    for (const [name, value] of Object.entries(vars)) {
      const curly = s.startsWith(`{${name}}`, at + 1);
      const plain =
        !curly && s.startsWith(name, at + 1) && !/[A-Za-z0-9_]/.test(s[at + 1 + name.length] ?? "");
      if (!curly && !plain) continue;
      // A token ld.so cannot expand drops the whole element.
      if (value === undefined) return undefined;
      out += value;
      i = at + 1 + name.length + (curly ? 2 : 0);
      matched = true;
      break;
    }
    if (!matched) {
      out += "$";
      i = at + 1;
    }
  }
}

/** A file as the resolver sees it, parsed once. */
type Loaded =
  | { kind: "elf"; elf: ElfFile }
  | { kind: "script"; shebang: Shebang }
  | { kind: "other" }
  | { kind: "error"; message: string };

/** A loaded object in one process (ld.so's struct link_map). */
interface Obj {
  /** Real path in the image, its identity. */
  path: string;
  /** Names a later DT_NEEDED matches without searching: names asked for and paths opened. */
  names: Set<string>;
  soname?: string;
  elf: ElfFile;
  /** $ORIGIN: the directory of the path the object was opened by (symlinks not resolved). */
  origin: string;
  /** The object whose DT_NEEDED brought this one in. */
  loader?: Obj;
}

/** One executable's load: ld.so state for a single process. */
interface Process {
  main: Obj;
  interpreter?: Obj;
  loaded: Obj[];
  /** musl's system path, when the interpreter is musl's. */
  musl?: string[];
  vars: { ORIGIN: string; LIB: string; PLATFORM: string | undefined };
}

/** A search's outcome: the file and the path it was opened by, nothing, or a file ld.so fails on. */
type Found = { res: ResolvedPath; elf: ElfFile; as: string } | "absent" | { fatal: string };

class Resolver {
  readonly files = new Map<string, string>();
  readonly warnings = new Set<string>();
  private readonly parsed = new Map<string, Promise<Loaded>>();
  private readonly env = new Map<string, string>();
  private ldCache?: Promise<LdCacheEntry[] | undefined>;
  private ldConf?: Promise<string[]>;
  private readonly systemDirs: string[];
  /** Executables already followed: the same program gives the same closure. */
  private readonly executed = new Set<string>();

  constructor(
    private readonly fs: ImageFs,
    private readonly opts: ClosureOptions,
  ) {
    for (const kv of opts.env ?? []) {
      const eq = kv.indexOf("=");
      if (eq > 0) this.env.set(kv.slice(0, eq), kv.slice(eq + 1));
    }
    this.systemDirs = defaultLibraryDirs(opts.machine, opts.elfClass);
  }

  private warn(message: string): void {
    this.warnings.add(message);
  }

  private note(path: string, reason: string): void {
    if (!this.files.has(path)) this.files.set(path, reason);
  }

  /** Records a resolved path and each symlink that led to it. */
  private keep(res: ResolvedPath, reason: string): void {
    for (const link of res.links)
      this.note(link, `symlink to ${this.fs.readlink(link)}, on the way to ${res.path}`);
    this.note(res.path, reason);
  }

  private fits(elf: ElfFile): boolean {
    return elf.machine === this.opts.machine && elf.elfClass === this.opts.elfClass;
  }

  private describeTarget(elf: ElfFile): string {
    const bits = (c: number) => (c === 2 ? "64" : "32");
    return `${bits(elf.elfClass)}-bit ${elfMachineName(elf.machine)}, not ${bits(this.opts.elfClass)}-bit ${elfMachineName(this.opts.machine)}`;
  }

  private load(path: string): Promise<Loaded> {
    let p = this.parsed.get(path);
    if (!p) {
      p = this.read(path);
      this.parsed.set(path, p);
    }
    return p;
  }

  private async read(path: string): Promise<Loaded> {
    const size = this.fs.lstat(path)?.size ?? 0;
    let buf = await this.fs.readFile(path, HEAD_BYTES);
    if (!buf) return { kind: "error", message: "cannot be read" };
    if (!isElf(buf)) {
      const shebang = parseShebang(buf);
      return shebang ? { kind: "script", shebang } : { kind: "other" };
    }
    for (;;) {
      try {
        return { kind: "elf", elf: parseElf(buf) };
      } catch (err) {
        if (!(err instanceof ElfError)) throw err;
        if (err.truncated && buf.length < size) {
          const full = await this.fs.readFile(path);
          if (full && full.length > buf.length) {
            buf = full;
            continue;
          }
        }
        return { kind: "error", message: `bad ELF file: ${err.message}` };
      }
    }
  }

  /** An executable, script or library the image runs or loads by path. */
  async root(path: string, reason: string, depth: number, label = path): Promise<void> {
    const res = resolvePath(this.fs, path);
    const st = res && this.fs.lstat(res.path);
    if (!res || !st) {
      this.warn(`${label}: not found`);
      return;
    }
    this.keep(res, reason);
    if (st.kind !== "file") return;
    const what = await this.load(res.path);
    if (what.kind === "elf") await this.exec(res.path, what.elf, label);
    else if (what.kind === "script") await this.script(res.path, what.shebang, depth);
    else if (what.kind === "error") this.warn(`${label}: ${what.message}`);
  }

  /** A #! script: its interpreter, and for `env NAME` the program found in PATH. */
  private async script(path: string, sb: Shebang, depth: number): Promise<void> {
    if (depth >= MAX_INTERPRETER_DEPTH) {
      this.warn(`${path}: too many levels of #! interpreters`);
      return;
    }
    // A relative interpreter is relative to the working directory, taken to be "/".
    const interp = posix.resolve("/", sb.interpreter);
    await this.root(interp, `interpreter of ${path}`, depth + 1, `${sb.interpreter}, interpreter of ${path}`);
    if (posix.basename(sb.interpreter) !== "env") return;
    const cmd = envCommand(sb.arg);
    if (cmd === undefined) return;
    const label = `${cmd}, run by ${sb.interpreter} in ${path}`;
    const found = cmd.includes("/") ? posix.resolve("/", cmd) : this.which(cmd);
    if (found === undefined) this.warn(`${label}: not found in PATH`);
    else await this.root(found, `run by ${sb.interpreter} in ${path}`, depth + 1, label);
  }

  /** execvp's search: the first executable regular file named `cmd` in the image's PATH. */
  private which(cmd: string): string | undefined {
    for (const dir of (this.env.get("PATH") ?? DEFAULT_PATH).split(":")) {
      if (dir === "") continue;
      const candidate = posix.join(posix.resolve("/", dir), cmd);
      const res = resolvePath(this.fs, candidate);
      const st = res && this.fs.lstat(res.path);
      if (st?.kind === "file" && (st.mode & 0o111) !== 0) return candidate;
    }
    return undefined;
  }

  /** One process: the interpreter, LD_PRELOAD and /etc/ld.so.preload, then DT_NEEDED breadth first. */
  private async exec(path: string, elf: ElfFile, label: string): Promise<void> {
    if (!this.fits(elf)) {
      this.warn(`${label}: ${this.describeTarget(elf)}`);
      return;
    }
    if (this.executed.has(path)) return;
    this.executed.add(path);
    // The kernel runs the real file, so the executable's $ORIGIN is past any symlink.
    const main: Obj = {
      path,
      names: new Set(),
      soname: elf.dynamic?.soname,
      elf,
      origin: posix.dirname(path),
    };
    const proc: Process = {
      main,
      loaded: [main],
      vars: {
        ORIGIN: main.origin,
        LIB: dstLibFor(undefined, this.opts.elfClass),
        PLATFORM: platformOf(elf.machine),
      },
    };
    if (elf.interpreter !== undefined) await this.interpreter(proc, elf.interpreter, path);
    if (!elf.dynamic) return;

    const queue: Obj[] = [main];
    for (const { name, reason } of await this.preloads(proc)) {
      const obj = await this.map(proc, name, main, reason);
      if (obj?.isNew) queue.push(obj.obj);
    }
    for (let i = 0; i < queue.length; i++) {
      const obj = queue[i]!;
      for (const name of obj.elf.dynamic?.needed ?? []) {
        const dep = await this.map(proc, name, obj, `needed by ${obj.path} (${name})`);
        if (dep?.isNew) queue.push(dep.obj);
      }
    }
  }

  private async interpreter(proc: Process, interp: string, exe: string): Promise<void> {
    const label = `${interp}, interpreter of ${exe}`;
    // musl by its name, so its rules apply even when the interpreter itself is missing.
    if (muslArch(interp) !== undefined) {
      const musl = await readMuslPath(this.fs, interp);
      proc.musl = musl.dirs;
      const file = musl.file === undefined ? undefined : resolvePath(this.fs, musl.file);
      if (file) this.keep(file, `search path of ${interp}`);
    }
    const res = resolvePath(this.fs, posix.resolve("/", interp));
    const st = res && this.fs.lstat(res.path);
    if (!res || st?.kind !== "file") {
      this.warn(`${label}: not found`);
      return;
    }
    this.keep(res, `interpreter of ${exe}`);
    const what = await this.load(res.path);
    if (what.kind !== "elf") {
      this.warn(`${label}: ${what.kind === "error" ? what.message : "not an ELF file"}`);
      return;
    }
    if (!this.fits(what.elf)) {
      this.warn(`${label}: ${this.describeTarget(what.elf)}`);
      return;
    }
    // ld.so answers to its PT_INTERP path and its soname (libc.so.6 needs "ld-linux-x86-64.so.2").
    const obj: Obj = {
      path: res.path,
      names: new Set([interp]),
      soname: what.elf.dynamic?.soname,
      elf: what.elf,
      origin: posix.dirname(interp),
    };
    proc.interpreter = obj;
    proc.loaded.push(obj);
    proc.vars.LIB = dstLibFor(res.path, this.opts.elfClass);
  }

  /** LD_PRELOAD (blank or colon separated) then glibc's /etc/ld.so.preload, in ld.so's order. */
  private async preloads(proc: Process): Promise<{ name: string; reason: string }[]> {
    const out: { name: string; reason: string }[] = [];
    for (const name of (this.env.get("LD_PRELOAD") ?? "").split(/[ :]/))
      if (name !== "") out.push({ name, reason: `in LD_PRELOAD (${name})` });
    if (proc.musl) return out;
    const res = resolvePath(this.fs, GLIBC_PRELOAD);
    if (!res || this.fs.lstat(res.path)?.kind !== "file") return out;
    const text = (await this.fs.readFile(res.path))?.toString("utf8") ?? "";
    const listed = text.split(/[ \t\n:]/).filter((n) => n !== "");
    if (listed.length > 0) this.keep(res, "read by ld.so at every start");
    for (const name of listed) out.push({ name, reason: `in ${GLIBC_PRELOAD} (${name})` });
    return out;
  }

  /**
   * ld.so's _dl_map_object: an object already loaded under this name or soname, else the
   * first file of the right class and machine along the search path.
   */
  private async map(
    proc: Process,
    name: string,
    loader: Obj,
    reason: string,
  ): Promise<{ obj: Obj; isNew: boolean } | undefined> {
    if (name === "") return undefined;
    const hit = proc.loaded.find((l) => l.names.has(name) || l.soname === name);
    if (hit) {
      hit.names.add(name);
      return { obj: hit, isNew: false };
    }
    // musl's loader is also its libc: "libc.*", "libpthread.*" etc. are itself.
    if (proc.musl && /^lib(?:c|pthread|rt|m|dl|util|xnet)\./.test(name)) {
      return proc.interpreter ? { obj: proc.interpreter, isNew: false } : undefined;
    }

    const opened = await this.search(proc, name, loader);
    const who = `${name} needed by ${loader.path}`;
    if (opened === "absent") {
      this.warn(`${who}: not found${proc.musl ? "" : await this.hint(name)}`);
      return undefined;
    }
    if ("fatal" in opened) {
      this.warn(`${who}: ${opened.fatal}`);
      return undefined;
    }
    const { res, elf } = opened;
    this.keep(res, reason);
    const same = proc.loaded.find((l) => l.path === res.path);
    if (same) {
      same.names.add(name);
      return { obj: same, isNew: false };
    }
    const openedAs = opened.as;
    const obj: Obj = {
      path: res.path,
      names: new Set([name, openedAs]),
      soname: elf.dynamic?.soname,
      elf,
      origin: posix.dirname(openedAs),
      loader,
    };
    proc.loaded.push(obj);
    return { obj, isNew: true };
  }

  /** The search order of glibc's ld.so (or musl's, for a musl interpreter). */
  private async search(proc: Process, name: string, loader: Obj): Promise<Found> {
    const vars = (o: Obj) => ({ ...proc.vars, ORIGIN: o.origin });
    if (name.includes("/")) {
      // A path, relative ones from the working directory (taken to be "/"); glibc expands DSTs.
      const expanded = proc.musl ? name : expandDst(name, vars(loader));
      if (expanded === undefined) return "absent";
      return this.tryAll([posix.resolve("/", expanded)]);
    }
    const inDirs = (dirs: string[]) => this.tryAll(dirs.map((d) => joinDir(d, name)));
    const ldLibraryPath = this.env.get("LD_LIBRARY_PATH") ?? "";

    if (proc.musl) {
      // musl: LD_LIBRARY_PATH, then the rpath (RUNPATH over RPATH) of each loader up the chain.
      let found = await inDirs(ldLibraryPath.split(/[:\n]/).filter((d) => d !== ""));
      for (let l: Obj | undefined = loader; found === "absent" && l; l = l.loader) {
        const rp = l.elf.dynamic?.runpath ?? l.elf.dynamic?.rpath;
        if (rp !== undefined) found = await inDirs(this.pathList(rp, ":", { ORIGIN: l.origin }));
      }
      return found === "absent" ? inDirs(proc.musl) : found;
    }

    // RPATH of the loader and its loaders up to the executable, unless the loader has a
    // RUNPATH. An object with both has its RPATH ignored everywhere.
    const runpathOf = (o: Obj) => o.elf.dynamic?.runpath;
    const rpathOf = (o: Obj) => (runpathOf(o) === undefined ? o.elf.dynamic?.rpath : undefined);
    if (runpathOf(loader) === undefined) {
      for (let l: Obj | undefined = loader; l; l = l.loader) {
        const rp = rpathOf(l);
        if (rp === undefined) continue;
        const found = await inDirs(this.pathList(rp, ":", vars(l)));
        if (found !== "absent") return found;
      }
    }
    if (ldLibraryPath !== "") {
      const found = await inDirs(this.pathList(ldLibraryPath, ":;", vars(proc.main)));
      if (found !== "absent") return found;
    }
    const runpath = runpathOf(loader);
    if (runpath !== undefined) {
      const found = await inDirs(this.pathList(runpath, ":", vars(loader)));
      if (found !== "absent") return found;
    }
    // DF_1_NODEFLIB on the loader rules out the system directories, in the cache too.
    const nodeflib = (loader.elf.dynamic?.flags1 ?? 0) & DF_1_NODEFLIB;
    const cached = lookupLdCache(
      (await this.cache(proc.main.elf)) ?? [],
      name,
      this.opts.machine,
      this.opts.elfClass,
    );
    if (cached && !(nodeflib && this.systemDirs.some((d) => cached.path.startsWith(`${d}/`)))) {
      const found = await this.tryAll([cached.path]);
      if (found !== "absent") {
        if (!("fatal" in found)) {
          const cache = resolvePath(this.fs, GLIBC_CACHE);
          if (cache) this.keep(cache, "ld.so's library cache");
        }
        return found;
      }
    }
    return nodeflib ? "absent" : inDirs(this.systemDirs);
  }

  /** Splits an rpath-style list and expands its tokens; empty elements (the cwd) are left out. */
  private pathList(list: string, seps: string, vars: Record<string, string | undefined>): string[] {
    const out: string[] = [];
    for (const part of list.split(new RegExp(`[${seps}]`))) {
      if (part === "") continue;
      const dir = expandDst(part, vars);
      if (dir !== undefined && dir !== "") out.push(dir);
    }
    return out;
  }

  /**
   * open_path: the first candidate that is an ELF object of the target's class and machine.
   * Missing files and other classes or machines are passed over; anything else that is
   * there but not a loadable ELF object stops the search, as ld.so fails on it.
   */
  private async tryAll(candidates: string[]): Promise<Found> {
    for (const as of candidates) {
      const res = resolvePath(this.fs, as);
      const st = res && this.fs.lstat(res.path);
      if (!res || st?.kind !== "file") continue;
      const what = await this.load(res.path);
      if (what.kind === "elf") {
        if (this.fits(what.elf)) return { res, elf: what.elf, as };
        continue;
      }
      return { fatal: `${as}: ${what.kind === "error" ? what.message : "not an ELF file"}` };
    }
    return "absent";
  }

  private cache(mainElf: ElfFile): Promise<LdCacheEntry[] | undefined> {
    this.ldCache ??= (async () => {
      const res = resolvePath(this.fs, GLIBC_CACHE);
      const buf = res && (await this.fs.readFile(res.path));
      if (!buf) return undefined;
      try {
        return parseLdCache(buf, mainElf.data === 1);
      } catch (err) {
        this.warn(`${GLIBC_CACHE}: ${(err as Error).message}`);
        return undefined;
      }
    })();
    return this.ldCache;
  }

  /** Why a library ld.so cannot find may still be in the image: ldconfig was not rerun. */
  private async hint(name: string): Promise<string> {
    this.ldConf ??= readLdSoConf(this.fs);
    for (const dir of await this.ldConf) {
      const found = await this.tryAll([joinDir(dir, name)]);
      if (found !== "absent" && !("fatal" in found))
        return ` (${found.as} exists and ${dir} is in /etc/ld.so.conf, but ${GLIBC_CACHE} does not list it: ldconfig was not run)`;
    }
    return "";
  }
}

/** dir + "/" + name as ld.so builds it: trailing slashes dropped, "/" kept. */
function joinDir(dir: string, name: string): string {
  const d = dir.replace(/\/+$/, "");
  return `${d}/${name}`;
}
