import { constants, type Stats } from "node:fs";
import { type FileHandle, open, stat } from "node:fs/promises";
import type { Readable } from "node:stream";
import { type Limits, limitsFromEnv, overLimit } from "./budget.js";
import type { Seekable } from "./byte-reader.js";
import { UserError } from "./errors.js";

/**
 * Every host file a user names (an image, a `.why`, a list, a kernel fragment, a profile, a
 * tarball, a kernel) is opened here, so none can hang or flood: its type is checked before it
 * is opened (following links: a FIFO would block open() for read until a writer comes, deaf to
 * signals; a character device such as /dev/zero never ends), it is opened non-blocking and
 * checked again on the descriptor (a name swapped for a FIFO in between is caught), and every
 * read is bounded (a whole file by SLIMROOT_MAX_READ, a text line by SLIMROOT_MAX_LINE).
 */

const FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

export interface InputOptions {
  /** A directory is what is expected too (dir: sources, --kernel DIR). */
  directory?: boolean;
}

/** What `st` is, for messages. */
function kindName(st: Stats): string {
  if (st.isFIFO()) return "a FIFO";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSocket()) return "a socket";
  if (st.isDirectory()) return "a directory";
  return "of an unknown type";
}

function refuse(what: string, st: Stats): UserError {
  return new UserError(`${what}: is ${kindName(st)}, not a regular file`);
}

/**
 * The input's stat (links followed) when it is a regular file (or a directory, when asked for);
 * one line naming `what` otherwise. Nothing is opened.
 */
export async function statInput(
  path: string | Buffer,
  what: string,
  opts: InputOptions = {},
): Promise<Stats> {
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new UserError(
      `${what}: ${err.code === "ENOENT" || err.code === "ENOTDIR" ? "no such file" : `cannot read (${err.code ?? err.message})`}`,
    );
  });
  if (st.isFile() || (opts.directory && st.isDirectory())) return st;
  throw refuse(what, st);
}

/** An open regular file and its size. Close `fh` when done. */
export interface OpenInput {
  fh: FileHandle;
  size: number;
}

/** Opens a regular file for reading without ever blocking (see above). */
export async function openInput(path: string | Buffer, what: string = String(path)): Promise<OpenInput> {
  const before = await statInput(path, what);
  const fh = await open(path, FLAGS).catch((err: NodeJS.ErrnoException) => {
    throw new UserError(`${what}: cannot open (${err.code === "EACCES" ? "permission denied" : err.code})`);
  });
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw refuse(what, st);
    if (st.ino !== before.ino || st.dev !== before.dev)
      throw new UserError(`${what}: replaced while being opened`);
    return { fh, size: st.size };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** The first `bytes` bytes of an input (fewer if it is shorter). */
export async function readHead(path: string, bytes: number, what: string = path): Promise<Buffer> {
  const { fh } = await openInput(path, what);
  try {
    const buf = Buffer.alloc(bytes);
    const { bytesRead } = await fh.read(buf, 0, bytes, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** A stream of an input's bytes (from `start`, to `end` inclusive); the file is closed at its end. */
export async function inputStream(
  path: string | Buffer,
  what: string = String(path),
  range: { start?: number; end?: number } = {},
): Promise<Readable> {
  const { fh } = await openInput(path, what);
  return fh.createReadStream({ ...range, highWaterMark: 256 * 1024 });
}

/**
 * A file's bytes from `start` up to `end` (exclusive) as chunks that
 * can also be passed over without reading them (ByteReader's Seekable): an archive's headers
 * walked without reading its bodies.
 */
export class FileChunks implements AsyncIterable<Buffer>, Seekable {
  private pos: number;
  constructor(
    private readonly fh: FileHandle,
    private readonly end: number,
    start = 0,
  ) {
    this.pos = start;
  }

  seek(n: number): number {
    const k = Math.min(n, this.end - this.pos);
    this.pos += k;
    return k;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    while (this.pos < this.end) {
      const buf = Buffer.allocUnsafe(Math.min(16 * 1024, this.end - this.pos));
      const { bytesRead } = await this.fh.read(buf, 0, buf.length, this.pos);
      if (bytesRead === 0) return;
      this.pos += bytesRead;
      yield buf.subarray(0, bytesRead);
    }
  }
}

const CHUNK = 64 * 1024;

/**
 * A whole input, read only up to `max` bytes: a file that is larger, or grows while it is
 * read, is refused at the limit, before its bytes are held.
 */
export async function readInput(
  path: string,
  what: string = path,
  max: { bytes: number; key: keyof Limits } = { bytes: limitsFromEnv().read, key: "read" },
  check?: (chunk: Buffer) => void,
): Promise<Buffer> {
  const { fh, size } = await openInput(path, what);
  try {
    if (size > max.bytes) throw tooLarge(what, size, max);
    const parts: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, max.bytes + 1 - total) || 1);
      const { bytesRead } = await fh.read(buf, 0, buf.length, total);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > max.bytes) throw tooLarge(what, total, max);
      const chunk = buf.subarray(0, bytesRead);
      check?.(chunk);
      parts.push(chunk);
    }
    return Buffer.concat(parts, total);
  } finally {
    await fh.close();
  }
}

function tooLarge(what: string, size: number, max: { bytes: number; key: keyof Limits }) {
  return new UserError(overLimit(`${what}: ${size} bytes or more`, max.key, max.bytes).message);
}

/**
 * A text input as UTF-8, bounded as a whole (SLIMROOT_MAX_READ) and line by line
 * (SLIMROOT_MAX_LINE) while it is read, so a file with no newline stops at the line limit.
 */
export async function readInputText(
  path: string,
  what: string = path,
  limits = limitsFromEnv(),
): Promise<string> {
  return (await readInputLines(path, what, limits)).toString("utf8");
}

/** readInputText's bounded read, as bytes (names in a list are bytes: tree/path.ts). */
export async function readInputLines(
  path: string,
  what: string = path,
  limits = limitsFromEnv(),
): Promise<Buffer> {
  let line = 1;
  let length = 0;
  const checkLines = (chunk: Buffer) => {
    // Searched as latin1 text (one character per byte): Buffer.indexOf's call per line cost a
    // kernel config's 2,500 lines 5 ms of run's start.
    const bytes = chunk.toString("latin1");
    for (let start = 0; ; ) {
      const nl = bytes.indexOf("\n", start);
      length += (nl < 0 ? bytes.length : nl) - start;
      if (length > limits.line)
        throw new UserError(overLimit(`${what}: line ${line} is longer`, "line", limits.line).message);
      if (nl < 0) return;
      line++;
      length = 0;
      start = nl + 1;
    }
  };
  return readInput(path, what, { bytes: limits.read, key: "read" }, checkLines);
}
