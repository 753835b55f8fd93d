import { closeSync, openSync, readSync, writeSync } from "node:fs";
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
}

const READ_CHUNK = 256 * 1024;
/** The spool's filesystem is asked for its free space after this many bytes are promised. */
const ROOM_CHECK_EVERY = 64 * 1024 * 1024;

/**
 * An append-only temp file holding the bodies of layer entries, so flattening streams each
 * layer once and memory stays flat however big a layer is. The file is removed on dispose.
 * It is written and read with synchronous calls on one descriptor: the data sits in the page
 * cache, and a thread-pool round trip per chunk (and an open per file) cost more than the copy.
 */
export class Spool {
  private length = 0;
  private promised = 0;

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
      let done = 0;
      while (done < chunk.length)
        done += writeSync(this.fd, chunk, done, chunk.length - done, this.length + done);
      this.length += chunk.length;
    }
    return this.contentAt(start, this.length - start);
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
    const { spool, start, size } = this;
    return Readable.from(
      (function* () {
        for (let offset = 0; offset < size; ) {
          const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, size - offset));
          const n = spool.readAt(buf, start + offset);
          if (n === 0) throw new Error("spool file shrank");
          offset += n;
          yield n === buf.length ? buf : buf.subarray(0, n);
        }
      })(),
    );
  }
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
