/**
 * The loader's configuration files, read from inside an image: glibc's /etc/ld.so.cache and
 * /etc/ld.so.conf, and musl's /etc/ld-musl-ARCH.path.
 */
import { type ImageFs, resolvePath } from "../tree/image-fs.js";
import { EM_386, EM_AARCH64, EM_ARM, EM_LOONGARCH, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64 } from "./elf.js";

export class LdCacheError extends Error {}

export interface LdCacheEntry {
  /** The soname looked up (DT_NEEDED). */
  name: string;
  path: string;
  /** FLAG_* bits: the low byte is the type (3 = ELF libc6), the next the architecture. */
  flags: number;
  /** Non-zero for glibc-hwcaps (or legacy hwcap) variants, which need a particular CPU. */
  hwcap: bigint;
}

const OLD_MAGIC = "ld.so-1.7.0";
const NEW_MAGIC = "glibc-ld.so.cache1.1";
const OLD_HEADER = 16;
const OLD_ENTRY = 12;
const NEW_HEADER = 48;
const NEW_ENTRY = 24;

/**
 * Parses a glibc ld.so.cache: the new format ("glibc-ld.so.cache1.1"), the old one
 * ("ld.so-1.7.0"), or the old one with the new appended, which then wins as it does for
 * ld.so. Entries come in file order, which is the order ld.so prefers among equal names.
 * `littleEndian` is for caches that do not record their byte order (before glibc 2.33).
 */
export function parseLdCache(buf: Buffer, littleEndian = true): LdCacheEntry[] {
  const magicAt = (off: number, magic: string) =>
    buf.length >= off + magic.length && buf.toString("latin1", off, off + magic.length) === magic;
  if (magicAt(0, NEW_MAGIC)) return parseNew(buf, 0, littleEndian);
  if (!magicAt(0, OLD_MAGIC)) throw new LdCacheError("not an ld.so.cache file");
  if (buf.length < OLD_HEADER) throw new LdCacheError("truncated ld.so.cache header");
  // The old format predates any byte-order marker: take the count that fits the file.
  const le = buf.readUInt32LE(12);
  const be = buf.readUInt32BE(12);
  const fits = (n: number) => OLD_HEADER + n * OLD_ENTRY <= buf.length;
  const oldLe = fits(le) && (littleEndian || !fits(be));
  const nlibs = oldLe ? le : be;
  if (!fits(nlibs)) throw new LdCacheError("truncated ld.so.cache entries");
  const oldEnd = OLD_HEADER + nlibs * OLD_ENTRY;
  // The new table follows, aligned to its struct (8 on 64-bit builds, 4 on some 32-bit ones).
  for (const align of [8, 4]) {
    const at = Math.ceil(oldEnd / align) * align;
    if (magicAt(at, NEW_MAGIC)) return parseNew(buf, at, littleEndian);
  }
  const entries: LdCacheEntry[] = [];
  for (let i = 0; i < nlibs; i++) {
    const e = OLD_HEADER + i * OLD_ENTRY;
    const u32 = (off: number) => (oldLe ? buf.readUInt32LE(off) : buf.readUInt32BE(off));
    entries.push({
      flags: u32(e) | 0,
      name: cstring(buf, oldEnd + u32(e + 4)),
      path: cstring(buf, oldEnd + u32(e + 8)),
      hwcap: 0n,
    });
  }
  return entries;
}

function parseNew(buf: Buffer, base: number, littleEndian: boolean): LdCacheEntry[] {
  if (buf.length < base + NEW_HEADER) throw new LdCacheError("truncated ld.so.cache header");
  // flags: 0 = unknown (old ldconfig), 1 = invalid, 2 = little endian, 3 = big endian.
  const endian = buf[base + 28]! & 3;
  if (endian === 1) throw new LdCacheError("ld.so.cache is marked invalid");
  const le = endian === 0 ? littleEndian : endian === 2;
  const u32 = (off: number) => (le ? buf.readUInt32LE(off) : buf.readUInt32BE(off));
  const u64 = (off: number) => (le ? buf.readBigUInt64LE(off) : buf.readBigUInt64BE(off));
  const nlibs = u32(base + 20);
  if (base + NEW_HEADER + nlibs * NEW_ENTRY > buf.length)
    throw new LdCacheError("truncated ld.so.cache entries");
  const entries: LdCacheEntry[] = [];
  for (let i = 0; i < nlibs; i++) {
    const e = base + NEW_HEADER + i * NEW_ENTRY;
    entries.push({
      flags: u32(e) | 0,
      // String offsets are from the start of the new header.
      name: cstring(buf, base + u32(e + 4)),
      path: cstring(buf, base + u32(e + 8)),
      hwcap: u64(e + 16),
    });
  }
  return entries;
}

function cstring(buf: Buffer, off: number): string {
  if (off >= buf.length) throw new LdCacheError(`string offset ${off} is past the end of ld.so.cache`);
  const nul = buf.indexOf(0, off);
  if (nul < 0) throw new LdCacheError(`unterminated string in ld.so.cache at ${off}`);
  return buf.toString("utf8", off, nul);
}

/** FLAG_ELF and FLAG_ELF_LIBC6, the entry types ld.so accepts. */
const FLAG_TYPE_MASK = 0xff;
const FLAG_REQUIRED_MASK = 0xff00;

/**
 * The architecture bits (FLAG_REQUIRED_MASK) ldconfig writes for libraries of a machine
 * and class; several where the ABI is not visible in e_machine (ARM and RISC-V float ABIs).
 */
function requiredFlags(machine: number, elfClass: 1 | 2): number[] {
  const is64 = elfClass === 2;
  switch (machine) {
    case EM_X86_64:
      return [is64 ? 0x0300 : 0x0800];
    case EM_AARCH64:
      return [0x0a00];
    case EM_S390:
      return [is64 ? 0x0400 : 0];
    case EM_PPC64:
      return [0x0500];
    case EM_ARM:
      return [0x0900, 0x0b00, 0];
    case EM_RISCV:
      return [0x1000, 0x0f00];
    case EM_LOONGARCH:
      return [0x1200, 0x1100];
    case EM_386:
      return [0];
    default:
      return [0];
  }
}

/** Whether ld.so for this machine and class would consider a cache entry with `flags`. */
export function cacheFlagsMatch(flags: number, machine: number, elfClass: 1 | 2): boolean {
  const type = flags & FLAG_TYPE_MASK;
  if (type !== 1 && type !== 3) return false;
  return requiredFlags(machine, elfClass).includes(flags & FLAG_REQUIRED_MASK);
}

/**
 * ld.so's cache lookup: the first entry for `name` of the right architecture, preferring the
 * baseline over glibc-hwcaps variants (which need a CPU we cannot know about).
 */
export function lookupLdCache(
  entries: LdCacheEntry[],
  name: string,
  machine: number,
  elfClass: 1 | 2,
): LdCacheEntry | undefined {
  let variant: LdCacheEntry | undefined;
  for (const e of entries) {
    if (e.name !== name || !cacheFlagsMatch(e.flags, machine, elfClass)) continue;
    if (e.hwcap === 0n) return e;
    variant ??= e;
  }
  return variant;
}

/** Nested includes deeper than this are a loop. */
const MAX_INCLUDE_DEPTH = 16;

/**
 * The library directories an ld.so.conf lists, in order, following `include` globs (relative
 * ones from the including file's directory, as ldconfig does). Files that do not exist are
 * skipped. Only ldconfig reads this; ld.so itself only sees the cache built from it.
 */
export async function readLdSoConf(fs: ImageFs, path = "/etc/ld.so.conf"): Promise<string[]> {
  const dirs: string[] = [];
  const visit = async (file: string, depth: number) => {
    if (depth > MAX_INCLUDE_DEPTH) return;
    const text = await readText(fs, file);
    if (text === undefined) return;
    for (const raw of text.split("\n")) {
      const line = raw.replace(/#.*/, "").trim();
      if (line === "") continue;
      const inc = /^include[ \t]+(.*)$/.exec(line);
      if (inc) {
        for (const pattern of inc[1]!.split(/[ \t]+/)) {
          if (pattern === "") continue;
          const full =
            pattern.startsWith("/") || !file.includes("/")
              ? pattern
              : `${file.slice(0, file.lastIndexOf("/")) || ""}/${pattern}`;
          for (const match of globImage(fs, full)) await visit(match, depth + 1);
        }
        continue;
      }
      if (/^hwcap[ \t]/i.test(line)) continue;
      // "dir=TYPE" is an old way to force a library type; the directory is what matters.
      let dir = line.replace(/=.*/, "").trim();
      while (dir.length > 1 && dir.endsWith("/")) dir = dir.slice(0, -1);
      if (dir !== "" && !dirs.includes(dir)) dirs.push(dir);
    }
  };
  await visit(path, 0);
  return dirs;
}

/** Reads a small text file through symlinks inside the image. */
async function readText(fs: ImageFs, path: string): Promise<string | undefined> {
  const res = resolvePath(fs, path);
  if (!res) return undefined;
  return (await fs.readFile(res.path))?.toString("utf8");
}

/** glob(3) over an image: "*", "?" and "[...]" within names; matches sorted, dotfiles need a dot. */
export function globImage(fs: ImageFs, pattern: string): string[] {
  let paths = [""];
  for (const seg of pattern.split("/").filter((s) => s !== "")) {
    const next: string[] = [];
    if (!/[*?[]/.test(seg)) {
      for (const p of paths) next.push(`${p}/${seg}`);
    } else {
      const re = globRegExp(seg);
      for (const p of paths) {
        const dir = resolvePath(fs, p === "" ? "/" : p);
        const names = dir ? fs.readdir(dir.path) : undefined;
        for (const name of names ?? []) {
          if (name.startsWith(".") && !seg.startsWith(".")) continue;
          if (re.test(name)) next.push(`${p}/${name}`);
        }
      }
    }
    paths = next;
  }
  return paths.filter((p) => {
    const res = resolvePath(fs, p);
    return res !== undefined && fs.lstat(res.path) !== undefined;
  });
}

function globRegExp(seg: string): RegExp {
  let re = "";
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]!;
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const close = seg.indexOf("]", i + 2);
      if (close < 0) {
        re += "\\[";
        continue;
      }
      let body = seg.slice(i + 1, close);
      if (body.startsWith("!")) body = `^${body.slice(1)}`;
      re += `[${body.replace(/\\/g, "\\\\")}]`;
      i = close;
    } else re += c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }
  try {
    return new RegExp(`^${re}$`, "u");
  } catch {
    // A class glob(3) would reject, such as "[z-a]": matches only itself.
    return new RegExp(`^${seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`, "u");
  }
}

/** musl's own defaults when its path file is absent. */
export const MUSL_DEFAULT_PATH = ["/lib", "/usr/local/lib", "/usr/lib"];

/** The ARCH of a musl interpreter path ("/lib/ld-musl-x86_64.so.1" -> "x86_64"). */
export function muslArch(interpreter: string): string | undefined {
  return /(?:^|\/)ld-musl-([^/]+)\.so\.1$/.exec(interpreter)?.[1];
}

/**
 * Where musl's loader reads its search path: /etc/ld-musl-ARCH.path under the prefix its
 * own path implies ("/usr/local/musl/lib/ld-musl-..." -> "/usr/local/musl/etc/...").
 */
export function muslPathFile(interpreter: string): string | undefined {
  const arch = muslArch(interpreter);
  if (arch === undefined) return undefined;
  let prefix = "";
  if (interpreter.startsWith("/")) {
    const last = interpreter.lastIndexOf("/");
    prefix = interpreter.slice(0, Math.max(0, interpreter.lastIndexOf("/", last - 1)));
  }
  return `${prefix}/etc/ld-musl-${arch}.path`;
}

/** musl's path file: directories separated by newlines or colons. */
export function parseMuslPath(text: string): string[] {
  return text.split(/[:\n]/).filter((d) => d !== "");
}

/** The directories musl searches after LD_LIBRARY_PATH and rpaths, and the file they came from. */
export async function readMuslPath(
  fs: ImageFs,
  interpreter: string,
): Promise<{ dirs: string[]; file?: string }> {
  const file = muslPathFile(interpreter);
  if (file === undefined) return { dirs: MUSL_DEFAULT_PATH };
  const text = await readText(fs, file);
  return text === undefined ? { dirs: MUSL_DEFAULT_PATH } : { dirs: parseMuslPath(text), file };
}
