import { nameBytes } from "../tree/path.js";

/** The "newc" (SVR4, no CRC) cpio format the Linux kernel unpacks as an initramfs. */

export const NEWC_MAGIC = "070701";
export const HEADER_SIZE = 110;
export const TRAILER_NAME = "TRAILER!!!";
/** The header's file size field is 8 hex digits. */
export const NEWC_MAX_FILE_SIZE = 0xffffffff;

export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

export interface NewcHeader {
  ino: number;
  /** File type and permission bits. */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  fileSize: number;
  devMajor: number;
  devMinor: number;
  rdevMajor: number;
  rdevMinor: number;
  name: string;
}

const FIELDS = [
  "ino",
  "mode",
  "uid",
  "gid",
  "nlink",
  "mtime",
  "fileSize",
  "devMajor",
  "devMinor",
  "rdevMajor",
  "rdevMinor",
] as const;

export function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/**
 * The bytes of a newc archive of entries with these names and body sizes, trailer included,
 * as writeRecords writes it: a header with its name padded to 4, then the body padded to 4.
 */
export function newcArchiveSize(entries: readonly { name: string; size: number }[]): number {
  let n = 0;
  for (const e of [...entries, { name: TRAILER_NAME, size: 0 }]) {
    const head = HEADER_SIZE + nameBytes(e.name).length + 1;
    n += head + pad4(head) + e.size + pad4(e.size);
  }
  return n;
}

/** Header plus NUL-terminated name plus padding, ready to be followed by the body. */
export function encodeHeader(h: NewcHeader): Buffer {
  // The kernel and GNU cpio stop a name at its first NUL: "..\0x" would be read as "..".
  if (h.name.includes("\0"))
    throw new RangeError(`cpio: ${JSON.stringify(h.name)}: name contains a NUL byte`);
  const name = Buffer.concat([nameBytes(h.name), Buffer.of(0)]);
  const parts = [NEWC_MAGIC];
  for (const f of FIELDS) {
    const v = h[f];
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new RangeError(`cpio: ${h.name}: ${f} ${v} does not fit in 32 bits`);
    }
    parts.push(v.toString(16).padStart(8, "0"));
  }
  parts.push(name.length.toString(16).padStart(8, "0"), "00000000");
  const head = Buffer.from(parts.join(""), "ascii");
  return Buffer.concat([head, name, Buffer.alloc(pad4(HEADER_SIZE + name.length))]);
}

/** Parses the 110-byte fixed part; the name is filled in by the caller. */
export function decodeHeader(buf: Buffer): NewcHeader & { nameSize: number } {
  const magic = buf.toString("ascii", 0, 6);
  if (magic !== NEWC_MAGIC) throw new Error(`not a newc cpio header (magic ${JSON.stringify(magic)})`);
  const field = (i: number) => {
    const text = buf.toString("ascii", 6 + i * 8, 14 + i * 8);
    if (!/^[0-9a-fA-F]{8}$/.test(text)) throw new Error(`corrupt cpio header field ${JSON.stringify(text)}`);
    return Number.parseInt(text, 16);
  };
  const h = { name: "", nameSize: field(11) } as NewcHeader & { nameSize: number };
  FIELDS.forEach((f, i) => {
    h[f] = field(i);
  });
  return h;
}
