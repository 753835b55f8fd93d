import { displayName, nameFromBytes } from "../util/name-bytes.js";

/**
 * One 512-byte tar header block, as POSIX ustar, GNU, star and old v7 tar write it. Numbers
 * are read exactly as Go's archive/tar (what docker and containerd unpack with) reads them, so
 * an archive means the same here as there; a hostile header gives a clear error instead of
 * NaN or a wrapped value.
 */

export const BLOCK = 512;

/** A problem in the archive; `entry` names the member when one is known. */
export class TarFormatError extends Error {
  constructor(
    message: string,
    readonly entry?: string,
  ) {
    super(message);
  }
}

export type TarFormat = "v7" | "ustar" | "gnu" | "star";

export interface HeaderBlock {
  /** Raw name bytes (ustar prefix joined), without the NUL terminator. */
  name: Buffer;
  linkname: Buffer;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch; may be negative. */
  mtime: number;
  /** The typeflag byte as a one-character string ("\0" for old regular files). */
  typeflag: string;
  devmajor: number;
  devminor: number;
  format: TarFormat;
  block: Buffer;
}

/** Bytes of a NUL-terminated field. */
export function field(buf: Buffer, start: number, length: number): Buffer {
  const end = buf.indexOf(0, start);
  return buf.subarray(start, end < 0 || end > start + length ? start + length : end);
}

/** Go's parseOctal: spaces and NULs trimmed at both ends, cut at a NUL, octal digits only. */
function octal(buf: Buffer, start: number, length: number): number | undefined {
  let a = start;
  let b = start + length;
  while (a < b && (buf[a] === 0x20 || buf[a] === 0)) a++;
  while (b > a && (buf[b - 1] === 0x20 || buf[b - 1] === 0)) b--;
  const text = field(buf, a, b - a).toString("latin1");
  if (text === "") return a === b ? 0 : undefined;
  return /^[0-7]+$/.test(text) ? Number.parseInt(text, 8) : undefined;
}

/**
 * A numeric field: octal text, or base-256 when the first byte has its high bit set (bit 6
 * is then the sign, as GNU tar and Go read it). Ranges (no negative size, owners that fit a
 * uid_t, values past 2^53) are checked by the caller where the value is used, as Go does.
 */
export function numberField(
  buf: Buffer,
  start: number,
  length: number,
  what: string,
  entry?: string,
): number {
  const first = buf[start]!;
  if (first & 0x80) {
    const inv = first & 0x40 ? 0xff : 0;
    let v = 0n;
    for (let i = start; i < start + length; i++) {
      v = (v << 8n) | BigInt((buf[i]! ^ inv) & (i === start ? 0x7f : 0xff));
    }
    // Past 2^63 is malformed to Go too; past 2^53 is only refused where the value is used.
    if (v >= 1n << 63n) throw new TarFormatError(`${what} is out of range`, entry);
    return Number(inv ? -v - 1n : v);
  }
  const v = octal(buf, start, length);
  if (v === undefined) {
    const text = buf.toString("latin1", start, start + length);
    throw new TarFormatError(`corrupt ${what} field ${JSON.stringify(text)}`, entry);
  }
  return v;
}

function checksumOk(block: Buffer): boolean {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  const want = octal(block, 148, 8);
  return want === unsigned || want === signed;
}

/** Which writer's layout the block has, by its magic (Go's getFormat). */
function formatOf(block: Buffer): TarFormat {
  const magic = block.toString("latin1", 257, 263);
  if (magic === "ustar\0") return block.toString("latin1", 508, 512) === "tar\0" ? "star" : "ustar";
  return magic === "ustar " && block.toString("latin1", 263, 265) === " \0" ? "gnu" : "v7";
}

export const isZeroBlock = (block: Buffer) => block.every((b) => b === 0);

/** Decodes a header block that is not all zeros. */
export function parseHeader(block: Buffer, at: number): HeaderBlock {
  const shortName = field(block, 0, 100);
  if (!checksumOk(block)) {
    throw new TarFormatError(`not a tar archive or corrupt header at byte ${at} (bad checksum)`);
  }
  const format = formatOf(block);
  let prefix: Buffer = Buffer.alloc(0);
  if (format === "ustar") prefix = field(block, 345, 155);
  else if (format === "star") prefix = field(block, 345, 131);
  else if (format === "gnu" && !gnuTimesParse(block)) {
    // Go before 1.8 wrote a ustar prefix into GNU headers; Go (so docker) still reads one
    // back when the GNU atime/ctime there do not parse and the bytes are ASCII.
    const p = field(block, 345, 155);
    if (p.every((b) => b < 0x80)) prefix = p;
  }
  const name = prefix.length ? Buffer.concat([prefix, Buffer.from("/"), shortName]) : shortName;
  const entry = displayName(nameFromBytes(name));
  try {
    if (format === "star") {
      numberField(block, 476, 12, "atime");
      numberField(block, 488, 12, "ctime");
    }
    return {
      name,
      linkname: field(block, 157, 100),
      mode: numberField(block, 100, 8, "mode") & 0o7777,
      uid: numberField(block, 108, 8, "uid"),
      gid: numberField(block, 116, 8, "gid"),
      size: numberField(block, 124, 12, "size"),
      mtime: numberField(block, 136, 12, "mtime"),
      typeflag: String.fromCharCode(block[156]!),
      devmajor: format === "v7" ? 0 : numberField(block, 329, 8, "devmajor"),
      devminor: format === "v7" ? 0 : numberField(block, 337, 8, "devminor"),
      format,
      block,
    };
  } catch (err) {
    if (err instanceof TarFormatError) throw new TarFormatError(err.message, entry);
    throw err;
  }
}

function gnuTimesParse(block: Buffer): boolean {
  for (const at of [345, 357]) {
    if (block[at] === 0) continue;
    try {
      numberField(block, at, 12, "time");
    } catch {
      return false;
    }
  }
  return true;
}

/**
 * A decimal integer as Go's strconv.ParseInt reads it (an optional sign, digits); undefined
 * when malformed or past 2^53 (Go would take up to 2^63: such values are refused here).
 */
export function decimal(text: string): number | undefined {
  if (!/^[+-]?[0-9]+$/.test(text)) return undefined;
  const v = Number(text);
  return Number.isSafeInteger(v) ? v : undefined;
}

const NUL_VALUE_KEYS = new Set(["path", "linkpath", "uname", "gname"]);

/**
 * "%d %s=%s\n" records, as Go's parsePAX reads them: the last value of a key wins and an
 * empty value means "no record" (POSIX). Keys are latin1 strings (their bytes), values stay
 * bytes (hdrcharset=BINARY names are raw). GNU sparse 0.0 offset/numbytes pairs are joined
 * into one GNU.sparse.map record, in order.
 */
export function parsePax(data: Buffer, entry: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const sparse: string[] = [];
  let pos = 0;
  while (pos < data.length) {
    const bad = () => new TarFormatError(`malformed pax header record at byte ${pos}`, entry);
    const sp = data.indexOf(0x20, pos);
    const len = sp < 0 ? undefined : decimal(data.toString("latin1", pos, sp));
    if (len === undefined || len < 5 || len > data.length - pos || pos + len <= sp + 1) throw bad();
    const end = pos + len;
    if (data[end - 1] !== 0x0a) throw bad();
    const rec = data.subarray(sp + 1, end - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw bad();
    const key = rec.toString("latin1", 0, eq);
    const value = rec.subarray(eq + 1);
    if (NUL_VALUE_KEYS.has(key) ? value.includes(0) : key.includes("\0")) {
      const what = NUL_VALUE_KEYS.has(key)
        ? `pax ${key} ${displayName(nameFromBytes(value))}`
        : "pax record name";
      throw new TarFormatError(`${what} contains a NUL byte`, entry);
    }
    if (key === "GNU.sparse.offset" || key === "GNU.sparse.numbytes") {
      const want = sparse.length % 2 ? "GNU.sparse.numbytes" : "GNU.sparse.offset";
      if (key !== want || value.includes(0x2c)) throw bad();
      sparse.push(value.toString("latin1"));
    } else out.set(key, value);
    pos = end;
  }
  if (sparse.length) out.set("GNU.sparse.map", Buffer.from(sparse.join(","), "latin1"));
  for (const [k, v] of out) if (v.length === 0) out.delete(k);
  return out;
}
