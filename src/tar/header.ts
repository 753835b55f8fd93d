import { displayName, nameFromBytes } from "../tree/path.js";

/**
 * One 512-byte tar header block, as POSIX ustar, GNU and old v7 tar write it. Numbers are
 * checked here, so a hostile header gives a clear error instead of NaN or a wrapped value.
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
  gnu: boolean;
  block: Buffer;
}

/** Bytes of a NUL-terminated field. */
export function field(buf: Buffer, start: number, length: number): Buffer {
  const end = buf.indexOf(0, start);
  return buf.subarray(start, end < 0 || end > start + length ? start + length : end);
}

/**
 * A numeric field: octal text (space or NUL terminated), or GNU base-256 when the first byte
 * has its high bit set. Negative values are only accepted where `negative` says so (mtime).
 */
export function numberField(
  buf: Buffer,
  start: number,
  length: number,
  what: string,
  negative = false,
): number {
  const first = buf[start]!;
  if (first & 0x80) {
    const neg = first === 0xff;
    if (!neg && first !== 0x80) throw new TarFormatError(`corrupt base-256 ${what} field`);
    if (neg && !negative) throw new TarFormatError(`negative ${what}`);
    let v = 0;
    for (let i = start + 1; i < start + length; i++) {
      v = v * 256 + (neg ? 0xff - buf[i]! : buf[i]!);
      if (v > Number.MAX_SAFE_INTEGER) throw new TarFormatError(`${what} is out of range`);
    }
    return neg ? -(v + 1) : v;
  }
  const text = field(buf, start, length).toString("latin1").trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`corrupt ${what} field ${JSON.stringify(text)}`);
  const v = Number.parseInt(text, 8);
  if (v > Number.MAX_SAFE_INTEGER) throw new TarFormatError(`${what} is out of range`);
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
  const text = field(block, 148, 8).toString("latin1").trim();
  if (!/^[0-7]+$/.test(text)) return false;
  const want = Number.parseInt(text, 8);
  return want === unsigned || want === signed;
}

/** Decodes a header block; null for an all-zero block (the end of the archive). */
export function parseHeader(block: Buffer): HeaderBlock | null {
  if (block.every((b) => b === 0)) return null;
  const shortName = field(block, 0, 100);
  if (!checksumOk(block)) {
    throw new TarFormatError("not a tar archive or corrupt header (bad checksum)");
  }
  const magic = block.toString("latin1", 257, 263);
  const ustar = magic === "ustar\0";
  const gnu = magic === "ustar ";
  const prefix = ustar ? field(block, 345, 155) : Buffer.alloc(0);
  const name = prefix.length ? Buffer.concat([prefix, Buffer.from("/"), shortName]) : shortName;
  const entry = displayName(nameFromBytes(name));
  try {
    return {
      name,
      linkname: field(block, 157, 100),
      mode: numberField(block, 100, 8, "mode") & 0o7777,
      uid: numberField(block, 108, 8, "uid"),
      gid: numberField(block, 116, 8, "gid"),
      size: numberField(block, 124, 12, "size"),
      mtime: numberField(block, 136, 12, "mtime", true),
      typeflag: String.fromCharCode(block[156]!),
      devmajor: ustar || gnu ? numberField(block, 329, 8, "devmajor") : 0,
      devminor: ustar || gnu ? numberField(block, 337, 8, "devminor") : 0,
      gnu,
      block,
    };
  } catch (err) {
    if (err instanceof TarFormatError) throw new TarFormatError(err.message, entry);
    throw err;
  }
}

export type PaxRecord = [key: string, value: Buffer];

/** A GNU long name or link without the NULs that end it. */
export function trimNuls(b: Buffer): Buffer {
  let end = b.length;
  while (end > 0 && b[end - 1] === 0) end--;
  return b.subarray(0, end);
}

/** "%d %s=%s\n" records; values stay bytes (hdrcharset=BINARY names are raw). */
export function parsePax(data: Buffer, entry: string): PaxRecord[] {
  const out: PaxRecord[] = [];
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // NUL padding after the last record
    const sp = data.indexOf(0x20, pos);
    const lenText = sp < 0 ? "" : data.toString("latin1", pos, sp);
    const len = /^[0-9]{1,9}$/.test(lenText) ? Number(lenText) : 0;
    if (len <= sp - pos + 1 || pos + len > data.length || data[pos + len - 1] !== 0x0a) {
      throw new TarFormatError(`malformed pax header record at byte ${pos}`, entry);
    }
    const rec = data.subarray(sp + 1, pos + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq < 0) throw new TarFormatError(`malformed pax header record at byte ${pos}`, entry);
    // Keys as names (bytes kept, tree/path.ts): an xattr name in SCHILY.xattr.NAME is one.
    out.push([nameFromBytes(rec.subarray(0, eq)), rec.subarray(eq + 1)]);
    pos += len;
  }
  return out;
}

/** The last value of each key; an empty value deletes (POSIX: a record with no value). */
export function lastValues(records: PaxRecord[]): Map<string, Buffer> {
  const m = new Map<string, Buffer>();
  for (const [k, v] of records) {
    if (v.length === 0) m.delete(k);
    else m.set(k, v);
  }
  return m;
}
