import type { Readable } from "node:stream";
import { decodeHeader, HEADER_SIZE, type NewcHeader, pad4, TRAILER_NAME } from "./newc.js";

export interface CpioEntry extends NewcHeader {
  body: Buffer;
}

/** Pulls exact byte counts out of a stream. */
class ByteReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private readonly it: AsyncIterator<Buffer>;
  offset = 0;

  constructor(stream: AsyncIterable<Buffer> | Iterable<Buffer>) {
    this.it =
      Symbol.asyncIterator in stream
        ? stream[Symbol.asyncIterator]()
        : (async function* () {
            yield* stream;
          })();
  }

  /** Exactly n bytes, or null at a clean end of stream before the first byte. */
  async read(n: number): Promise<Buffer | null> {
    while (this.buffered < n) {
      const next = await this.it.next();
      if (next.done) {
        if (this.buffered === 0) return null;
        throw new Error(`truncated cpio archive at byte ${this.offset + this.buffered}`);
      }
      this.chunks.push(next.value);
      this.buffered += next.value.length;
    }
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    this.offset += n;
    return out;
  }

  async must(n: number): Promise<Buffer> {
    if (n === 0) return Buffer.alloc(0);
    const b = await this.read(n);
    if (!b) throw new Error(`truncated cpio archive at byte ${this.offset}`);
    return b;
  }
}

/**
 * Reads a newc archive (one, or several concatenated as the kernel accepts) entry by entry,
 * stopping at the last trailer. Bodies are returned whole; the writer keeps them in order.
 */
export async function* readCpio(
  stream: Readable | AsyncIterable<Buffer> | Iterable<Buffer>,
): AsyncGenerator<CpioEntry> {
  const r = new ByteReader(stream as AsyncIterable<Buffer> | Iterable<Buffer>);
  let sawTrailer = false;
  for (;;) {
    let head = await r.read(sawTrailer ? 4 : HEADER_SIZE);
    if (!head) break;
    if (sawTrailer) {
      // Concatenated archives may be separated by zero padding, which the kernel skips 4 bytes at a time.
      if (head.every((b) => b === 0)) continue;
      head = Buffer.concat([head, await r.must(HEADER_SIZE - 4)]);
    }
    const h = decodeHeader(head);
    const nameBuf = await r.must(h.nameSize + pad4(HEADER_SIZE + h.nameSize));
    h.name = nameBuf.toString("utf8", 0, Math.max(0, h.nameSize - 1));
    const body = await r.must(h.fileSize);
    await r.must(pad4(h.fileSize));
    if (h.name === TRAILER_NAME) {
      sawTrailer = true;
      continue;
    }
    sawTrailer = false;
    const { nameSize: _ignored, ...header } = h;
    yield { ...header, body };
  }
  if (!sawTrailer) throw new Error("cpio archive has no TRAILER!!! record");
}
