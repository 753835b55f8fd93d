import { isAscii } from "node:buffer";
import {
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Script } from "node:vm";

/**
 * How a script ran: from a cache V8 took ("hit"), compiled with no cache or a refused one
 * ("miss", "rejected": a new cache is written at exit), or with caching off.
 */
export type CacheUse = "hit" | "miss" | "rejected" | "off";

// CommonJS's own wrapper, on the script's first line: stack traces keep the file's line numbers.
const HEAD = Buffer.from("(function (exports, require, module, __filename, __dirname) { ");
const TAIL = Buffer.from("\n})");

/** FNV-1a, 64-bit: a short stable name for what a cache depends on (not a security boundary). */
function fnv1a(text: string): string {
  let h = 0xcbf29ce484222325n;
  for (let i = 0; i < text.length; i++)
    h = BigInt.asUintN(64, (h ^ BigInt(text.charCodeAt(i))) * 0x100000001b3n);
  return h.toString(16).padStart(16, "0");
}

/**
 * The cache file's bytes, only when it is ours to trust: a regular file of this user that no
 * one else may write (it is code this process runs). Anything else, or no file: undefined.
 */
function readTrusted(file: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    const uid = process.getuid?.();
    if (!st.isFile() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) return undefined;
    return readFileSync(fd);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes the cache whole (temp beside, renamed) and drops the older ones of the same `prefix`
 * (this label, this script's path); never throws.
 */
function save(script: Script, file: string, prefix: string): void {
  const dir = dirname(file);
  const temp = `${file}.${process.pid}.tmp`;
  try {
    const data = script.createCachedData();
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(temp, data, { mode: 0o600 });
    renameSync(temp, file);
    const mine = file.slice(dir.length + 1);
    for (const name of readdirSync(dir))
      if (name.startsWith(prefix) && name.endsWith(".bin") && name !== mine)
        rmSync(join(dir, name), { force: true });
  } catch {
    // A cache is only ever a shortcut: a read-only or full disk costs the next start its compile.
    try {
      rmSync(temp, { force: true });
    } catch {
      // not even a directory to look in
    }
  }
}

/**
 * Runs the CommonJS script `file` as Node's loader would (its own `require`, `module`,
 * `__filename`), compiled from V8's code cache in `cacheDir` when there is one that fits.
 *
 * Node 20 caches no compiled code for a process's modules: each start of a large script parses
 * it again and compiles every function it calls. V8's cache of a script, made once the script
 * has run (so the functions it called lazily are in it), lets the next start skip both. One
 * cache per `label` (the command: each calls its own functions) and script path (two
 * installations keep theirs), its name keyed by the
 * script's size, mtime and inode and by Node's version, architecture and flags: a cache V8 would
 * refuse is never looked up, and one it refuses anyway is replaced. `cacheDir` undefined: no
 * cache read or written.
 */
export function runCached(file: string, cacheDir: string | undefined, label: string): CacheUse {
  const fd = openSync(file, "r");
  let text: Buffer;
  let key: string;
  try {
    const st = fstatSync(fd, { bigint: true });
    key = fnv1a(
      [
        process.version,
        process.arch,
        process.execArgv.join(" "),
        process.env.NODE_OPTIONS ?? "",
        st.size,
        st.mtimeNs,
        st.ino,
        st.dev,
      ].join("\0"),
    );
    // Read between its wrapper's two halves: the source is one string from the start, not
    // a 1 MB concatenation V8 would copy again.
    const size = Number(st.size);
    text = Buffer.allocUnsafe(HEAD.length + size + TAIL.length);
    HEAD.copy(text);
    for (let got = 0; got < size; ) {
      const n = readSync(fd, text, HEAD.length + got, size - got, got);
      if (n === 0) throw new Error(`${file}: shorter than its size`);
      got += n;
    }
    TAIL.copy(text, HEAD.length + size);
  } finally {
    closeSync(fd);
  }
  // esbuild writes ASCII (it escapes strings); latin1 is then the same text, decoded at a third of the cost.
  const source = text.toString(isAscii(text) ? "latin1" : "utf8");
  const prefix = `${label}-${fnv1a(file).slice(0, 8)}-`;
  const cacheFile = cacheDir === undefined ? undefined : join(cacheDir, `${prefix}${key}.bin`);
  const cachedData = cacheFile === undefined ? undefined : readTrusted(cacheFile);
  const script = new Script(source, {
    filename: file,
    ...(cachedData ? { cachedData } : {}),
  });
  const use: CacheUse =
    cacheFile === undefined ? "off" : !cachedData ? "miss" : script.cachedDataRejected ? "rejected" : "hit";
  if (cacheFile !== undefined && use !== "hit") process.once("exit", () => save(script, cacheFile, prefix));
  const module = { exports: {} };
  script.runInThisContext()(module.exports, createRequire(file), module, file, dirname(file));
  return use;
}
