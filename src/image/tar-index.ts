import type { FileHandle } from "node:fs/promises";
import { readTar, tarErrorText } from "../tar/reader.js";
import { displayName, EscapeError, normalizeImagePath } from "../tree/path.js";
import type { Seekable } from "../util/byte-reader.js";
import { UserError } from "../util/errors.js";
import { openInput } from "../util/input-file.js";

export interface TarMember {
  name: string;
  /** Byte offset of the body in the archive. */
  offset: number;
  size: number;
  /** Stored as a GNU sparse file: there is no one range of the archive to read. */
  sparse?: true;
}

/** A file's bytes as chunks that can also be passed over without reading them. */
class FileChunks implements AsyncIterable<Buffer>, Seekable {
  private pos = 0;
  constructor(
    private readonly fh: FileHandle,
    private readonly size: number,
  ) {}

  seek(n: number): number {
    const k = Math.min(n, this.size - this.pos);
    this.pos += k;
    return k;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    while (this.pos < this.size) {
      const buf = Buffer.allocUnsafe(Math.min(16 * 1024, this.size - this.pos));
      const { bytesRead } = await this.fh.read(buf, 0, buf.length, this.pos);
      if (bytesRead === 0) return;
      this.pos += bytesRead;
      yield buf.subarray(0, bytesRead);
    }
  }
}

/**
 * Lists the regular files of an uncompressed tar, so members (such as a docker-archive's
 * layers) can be streamed later by offset. It is the layer reader itself (readTar) walking
 * the headers, seeking over bodies: the archive is read as strictly, and names resolve the
 * same way, as every layer is.
 */
export async function indexTar(file: string): Promise<Map<string, TarMember>> {
  const { fh } = await openInput(file);
  let current: string | undefined;
  try {
    const members = new Map<string, TarMember>();
    for await (const e of readTar(new FileChunks(fh, (await fh.stat()).size))) {
      current = displayName(e.name);
      if (e.kind !== "file") continue;
      const at = e.extent ?? { offset: -1, size: e.size };
      members.set(normalizeImagePath(e.name), { name: e.name, ...at, ...(e.extent ? {} : { sparse: true }) });
    }
    return members;
  } catch (err) {
    if (err instanceof EscapeError) throw new UserError(`${file}: entry ${current}: ${err.message}`);
    const text = tarErrorText(err, current);
    throw text === undefined ? err : new UserError(`${file}: ${text}`);
  } finally {
    await fh.close();
  }
}
