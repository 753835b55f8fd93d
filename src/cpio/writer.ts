import { Readable } from "node:stream";
import { nameBytes } from "../tree/path.js";
import type { Content } from "../tree/spool.js";
import type { Inode, Tree } from "../tree/tree.js";
import {
  encodeHeader,
  type NewcHeader,
  pad4,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
  TRAILER_NAME,
} from "./newc.js";

/**
 * One archive entry as the writer takes it (u-root's cpio.Record): everything the header
 * says, plus the body. Producers decide names, numbers and link counts; the writer only
 * encodes, so the same records always give the same bytes.
 */
export interface CpioRecord {
  /** "." for the root, else "usr/bin/env" (no leading slash). */
  name: string;
  /** File type and permission bits (S_IF* | 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  /** Inode number; when absent the writer numbers records in order (give all or none). */
  ino?: number;
  /** Link count; when absent 2 for a directory, else 1. */
  nlink?: number;
  rdevMajor?: number;
  rdevMinor?: number;
  /** A symlink's target or a file's bytes; absent: empty. */
  body?: Buffer | Content;
}

export interface CpioOptions {
  /** Every mtime later than this is lowered to it (SOURCE_DATE_EPOCH clamping). */
  clampMtime: number;
}

export interface WriteOptions {
  /** Sees each entry's header as written (the trailer's not): what a reader will read. */
  onHeader?: (h: NewcHeader) => void;
}

export const TYPE_BITS: Record<Inode["kind"], number> = {
  file: S_IFREG,
  dir: S_IFDIR,
  symlink: S_IFLNK,
  char: S_IFCHR,
  block: S_IFBLK,
  fifo: S_IFIFO,
  socket: S_IFSOCK,
};

/** st_mode of an inode: its type bits and permissions (Linux symlinks are always 0777). */
export function inodeMode(inode: Inode): number {
  return TYPE_BITS[inode.kind] | (inode.kind === "symlink" ? 0o777 : inode.mode & 0o7777);
}

/** Streams `tree` as a newc archive (see treeRecords for the order and hard links). */
export function writeCpio(tree: Tree, options: CpioOptions & WriteOptions): Readable {
  return writeRecords(treeRecords(tree, options), options);
}

/** Records in, newc bytes out, ending with the trailer. */
export function writeRecords(
  records: Iterable<CpioRecord> | AsyncIterable<CpioRecord>,
  o: WriteOptions = {},
): Readable {
  return Readable.from(coalesce(cpioChunks(records, o)), { objectMode: false });
}

/**
 * `dir` and each of its parents from ".", as plain 0755 root directories with mtime 0, for
 * small archives appended to an image (each but the last holds one subdirectory).
 */
export function directoryChain(dir: string): CpioRecord[] {
  const names = [".", ...dir.split("/").map((_, i, segs) => segs.slice(0, i + 1).join("/"))];
  return names.map((name, i) => ({
    name,
    mode: S_IFDIR | 0o755,
    uid: 0,
    gid: 0,
    mtime: 0,
    nlink: i < names.length - 1 ? 3 : 2,
  }));
}

/**
 * The records of `tree`: parents before children, names sorted byte-wise, inode numbers given
 * in that order (so the same tree always gives the same bytes), and hard links written the way
 * GNU cpio and the kernel agree on: every name of the inode shares its number and link count,
 * and only the last one carries the body.
 */
export function* treeRecords(tree: Tree, { clampMtime }: CpioOptions): Generator<CpioRecord> {
  // Two walks of the tree instead of one list of every entry, and per-inode state only for
  // inodes with several names (hard links) and directories: memory stays near the tree's own.
  const ino = new Map<Inode, number>();
  const names = new Map<Inode, number>();
  const subdirs = new Map<Inode, number>();
  for (const { path, inode } of tree.walk()) {
    if (!ino.has(inode)) ino.set(inode, ino.size + 1);
    else names.set(inode, (names.get(inode) ?? 1) + 1);
    if (inode.kind === "dir" && path !== "") {
      const parent = tree.get(path.slice(0, Math.max(0, path.lastIndexOf("/"))))!.inode;
      subdirs.set(parent, (subdirs.get(parent) ?? 0) + 1);
    }
  }
  const seen = new Map<Inode, number>();
  for (const { path, inode } of tree.walk()) {
    const count = names.get(inode) ?? 1;
    let nth = 1;
    if (count > 1) {
      nth = (seen.get(inode) ?? 0) + 1;
      seen.set(inode, nth);
    }
    const nlink = inode.kind === "dir" ? 2 + (subdirs.get(inode) ?? 0) : count;
    yield inodeRecord(path, inode, { ino: ino.get(inode)!, nlink, last: nth === count, clampMtime });
  }
}

/**
 * One name of `inode` as a record: a symlink's target as its body, a file's body only on the
 * last name of its hard-link group (`last`), mtimes clamped.
 */
export function inodeRecord(
  path: string,
  inode: Inode,
  o: { ino: number; nlink: number; last: boolean; clampMtime: number },
): CpioRecord {
  let body: CpioRecord["body"];
  if (inode.kind === "symlink") body = nameBytes(inode.target ?? "");
  else if (inode.kind === "file" && o.last) body = inode.content;
  return {
    name: path === "" ? "." : path,
    ino: o.ino,
    // Linux symlinks are always 0777; what a tar header says for them means nothing.
    mode: inodeMode(inode),
    uid: inode.uid,
    gid: inode.gid,
    nlink: o.nlink,
    mtime: Math.max(0, Math.min(inode.mtime, o.clampMtime)),
    rdevMajor: inode.rdevMajor ?? 0,
    rdevMinor: inode.rdevMinor ?? 0,
    ...(body ? { body } : {}),
  };
}

/**
 * What the archive will leave out: newc has no field for extended attributes, so files that
 * carry some (file capabilities such as cap_net_bind_service included) lose them. One warning
 * naming the files (the first few, then a count).
 */
export function cpioWarnings(tree: Tree): string[] {
  const paths: string[] = [];
  for (const { path, inode } of tree.walk()) if (inode.xattrs?.size) paths.push(`/${path}`);
  if (paths.length === 0) return [];
  const shown = paths.slice(0, 5).join(", ");
  const more = paths.length > 5 ? ` and ${paths.length - 5} more` : "";
  return [
    `newc cpio cannot hold extended attributes; dropped those of ${shown}${more} (file capabilities included)`,
  ];
}

const BATCH = 256 * 1024;
const PASS_THROUGH = 64 * 1024;

/**
 * Joins small pieces (headers, padding, small bodies) so each downstream write is worth it;
 * a large piece (a file's body as read) goes on as it is, after what was batched before it,
 * rather than being copied once more.
 */
async function* coalesce(pieces: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let batch: Buffer[] = [];
  let bytes = 0;
  for await (const piece of pieces) {
    if (piece.length >= PASS_THROUGH) {
      if (bytes) yield Buffer.concat(batch, bytes);
      batch = [];
      bytes = 0;
      yield piece;
      continue;
    }
    batch.push(piece);
    bytes += piece.length;
    if (bytes >= BATCH) {
      yield Buffer.concat(batch, bytes);
      batch = [];
      bytes = 0;
    }
  }
  if (bytes) yield Buffer.concat(batch, bytes);
}

async function* cpioChunks(
  records: Iterable<CpioRecord> | AsyncIterable<CpioRecord>,
  { onHeader }: WriteOptions,
): AsyncGenerator<Buffer> {
  let next = 1;
  for await (const r of records) {
    const ino = r.ino ?? next;
    next = Math.max(next, ino + 1);
    const size = r.body === undefined ? 0 : Buffer.isBuffer(r.body) ? r.body.length : r.body.size;
    const header: NewcHeader = {
      name: r.name,
      ino,
      mode: r.mode,
      uid: r.uid,
      gid: r.gid,
      nlink: r.nlink ?? ((r.mode & S_IFMT) === S_IFDIR ? 2 : 1),
      mtime: r.mtime,
      fileSize: size,
      devMajor: 0,
      devMinor: 0,
      rdevMajor: r.rdevMajor ?? 0,
      rdevMinor: r.rdevMinor ?? 0,
    };
    onHeader?.(header);
    yield encodeHeader(header);
    if (Buffer.isBuffer(r.body)) {
      yield r.body;
    } else if (size > 0 && r.body) {
      let got = 0;
      for await (const chunk of r.body.chunks?.() ?? r.body.open()) {
        got += (chunk as Buffer).length;
        if (got > size) break;
        yield chunk as Buffer;
      }
      if (got !== size)
        throw new Error(`${r.name}: expected ${size} bytes, read ${got} (did the file change?)`);
    }
    const padding = pad4(size);
    if (padding) yield Buffer.alloc(padding);
  }
  yield encodeHeader({
    name: TRAILER_NAME,
    ino: 0,
    mode: 0,
    uid: 0,
    gid: 0,
    nlink: 1,
    mtime: 0,
    fileSize: 0,
    devMajor: 0,
    devMinor: 0,
    rdevMajor: 0,
    rdevMinor: 0,
  });
}
