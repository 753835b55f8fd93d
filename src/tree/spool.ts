import { closeSync, openSync, readSync, write } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { checkRoom } from "../util/budget.js";
import { inputStream } from "../util/input-file.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";

/** Where a file's bytes live while the image is assembled. */
export interface Content {
  readonly size: number;
  open(): Readable;
  /**
   * The same bytes as open(), as plain chunks, for a reader that only iterates them (the cpio
   * writer): no stream per file. Contents that have no such form leave it out.
   */
  chunks?(): AsyncIterable<Buffer>;
}

const READ_CHUNK = 256 * 1024;
/** The write-behind buffer (see Spool). */
const STAGE = 1024 * 1024;
/** The spool's filesystem is asked for its free space after this many bytes are promised. */
const ROOM_CHECK_EVERY = 64 * 1024 * 1024;

/**
 * An append-only temp file holding the bodies of layer entries, so flattening streams each
 * layer once and memory stays flat however big a layer is. The file is removed on dispose.
 * Bodies are copied into a 1 MiB buffer that is written behind, on the thread pool, while the
 * tar is read on (at most two buffers in flight); reads wait for what was appended before them
 * to be written, then read with synchronous calls on one descriptor: the data sits in the page
 * cache, and a thread-pool round trip per chunk (and an open per file) cost more than the copy.
 */
export class Spool {
  private length = 0;
  private promised = 0;
  /** Bytes appended but not yet handed to a write, at file offset `handed`. */
  private stage: Buffer = Buffer.allocUnsafe(STAGE);
  private staged = 0;
  private handed = 0;
  /** Every write handed off so far, in order; rejects with the first write's error. */
  private writing: Promise<void> = Promise.resolve();
  private readonly free: Buffer[] = [];

  private constructor(
    private readonly dir: string,
    private fd: number,
  ) {}

  static async create(parent = tmpdir()): Promise<Spool> {
    const dir = await mkdtemp(join(parent, "slimroot-spool-"));
    trackTempPath(dir);
    const fd = openSync(join(dir, "bodies"), "w+", 0o600);
    return new Spool(dir, fd);
  }

  /** Appends everything `body` yields; returns a Content for it. */
  async append(body: AsyncIterable<Buffer>): Promise<Content> {
    const start = this.length;
    for await (const chunk of body) {
      for (let done = 0; done < chunk.length; ) {
        const n = chunk.copy(this.stage, this.staged, done);
        done += n;
        this.staged += n;
        this.length += n;
        if (this.staged === STAGE) await this.handOff();
      }
    }
    return this.contentAt(start, this.length - start);
  }

  /**
   * Hands the staged bytes to a write after the ones before it and stages into a free buffer;
   * returns the write before it, so an appender that waits for it has at most two in flight.
   */
  private handOff(): Promise<void> {
    const buf = this.stage;
    const n = this.staged;
    const at = this.handed;
    this.stage = this.free.pop() ?? Buffer.allocUnsafe(STAGE);
    this.staged = 0;
    this.handed += n;
    const before = this.writing;
    this.writing = before.then(() => writeFully(this.fd, buf, n, at)).then(() => void this.free.push(buf));
    // Reported to whoever waits next (an append, a read, dispose), not as an unhandled rejection.
    this.writing.catch(() => undefined);
    return before;
  }

  /** Resolves once everything appended so far is in the file; rejects with a failed write's error. */
  settle(): Promise<void> {
    if (this.staged) this.handOff();
    return this.writing;
  }

  /**
   * Checks, before `size` bytes are appended, that the spool's filesystem has room for them:
   * one statfs per 64 MiB promised, so a large body is checked before its first byte and many
   * small ones now and then.
   */
  reserve(size: number): void {
    this.promised += size;
    if (this.promised < ROOM_CHECK_EVERY) return;
    this.promised = 0;
    checkRoom(this.dir, size);
  }

  private contentAt(start: number, size: number): Content {
    return size === 0 ? EMPTY : new SpoolContent(this, start, size);
  }

  /** Fills `buf` from the spool file at `position`; returns the byte count. */
  readAt(buf: Buffer, position: number): number {
    return readSync(this.fd, buf, 0, buf.length, position);
  }

  async dispose(): Promise<void> {
    // No write may still be using the descriptor when it is closed (and its number reused).
    await this.writing.catch(() => undefined);
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    await rm(this.dir, { recursive: true, force: true });
    untrackTempPath(this.dir);
  }
}

/*
 * One small object per file, its method on the prototype: a closure per file cost about
 * 400 bytes each (the function, its context and, under tsx, its name property), which is
 * most of the memory of a layer of a million small files.
 */
class SpoolContent implements Content {
  constructor(
    private readonly spool: Spool,
    private readonly start: number,
    readonly size: number,
  ) {}

  open(): Readable {
    return Readable.from(this.chunks());
  }

  async *chunks(): AsyncGenerator<Buffer> {
    const { spool, start, size } = this;
    await spool.settle();
    for (let offset = 0; offset < size; ) {
      const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, size - offset));
      const n = spool.readAt(buf, start + offset);
      if (n === 0) throw new Error("spool file shrank");
      offset += n;
      yield n === buf.length ? buf : buf.subarray(0, n);
    }
  }
}

/** Writes `n` bytes of `buf` at `position`, on the thread pool. */
function writeFully(fd: number, buf: Buffer, n: number, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const next = (done: number) => {
      if (done === n) return resolve();
      write(fd, buf, done, n - done, position + done, (err, written) =>
        err ? reject(err) : next(done + written),
      );
    };
    next(0);
  });
}

const EMPTY: Content = { size: 0, open: () => Readable.from([]) };

/** Content held in memory: slimroot's own small files (app config, init). */
export function bufferContent(data: Buffer): Content {
  return { size: data.length, open: () => Readable.from([data]) };
}

/**
 * Content of a host file, read when the image is written: opened as an input (never a FIFO
 * swapped in since) and read no further than the size it had when it was listed.
 */
export function hostFileContent(path: string | Buffer, size: number): Content {
  return {
    size,
    open: () =>
      Readable.from(
        size === 0
          ? []
          : (async function* () {
              yield* await inputStream(path, undefined, { start: 0, end: size - 1 });
            })(),
      ),
  };
}
