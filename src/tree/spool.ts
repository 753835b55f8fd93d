import { createReadStream } from "node:fs";
import { type FileHandle, mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";

/** Where a file's bytes live while the image is assembled. */
export interface Content {
  readonly size: number;
  open(): Readable;
}

/**
 * An append-only temp file holding the bodies of layer entries, so flattening streams each
 * layer once and memory stays flat however big a layer is. The file is unlinked on dispose.
 */
export class Spool {
  private constructor(
    private readonly dir: string,
    private readonly path: string,
    private readonly handle: FileHandle,
  ) {}

  private length = 0;

  static async create(parent = tmpdir()): Promise<Spool> {
    const dir = await mkdtemp(join(parent, "slimroot-spool-"));
    const path = join(dir, "bodies");
    const handle = await open(path, "w+", 0o600);
    return new Spool(dir, path, handle);
  }

  /** Appends everything `body` yields; returns a Content for it. */
  async append(body: AsyncIterable<Buffer>): Promise<Content> {
    const start = this.length;
    for await (const chunk of body) {
      await this.handle.write(chunk, 0, chunk.length, this.length);
      this.length += chunk.length;
    }
    return this.contentAt(start, this.length - start);
  }

  private contentAt(start: number, size: number): Content {
    const path = this.path;
    return {
      size,
      open: () =>
        size === 0
          ? Readable.from([])
          : createReadStream(path, { start, end: start + size - 1, highWaterMark: 256 * 1024 }),
    };
  }

  async dispose(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Content held in memory: slimroot's own small files (app config, init). */
export function bufferContent(data: Buffer): Content {
  return {
    size: data.length,
    open: () => Readable.from([data]),
  };
}

/** Content of a host file, read when the image is written. */
export function hostFileContent(path: string, size: number): Content {
  return { size, open: () => createReadStream(path, { highWaterMark: 256 * 1024 }) };
}
