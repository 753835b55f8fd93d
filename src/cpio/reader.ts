import type { Readable } from "node:stream";
import { nameFromBytes } from "../tree/path.js";
import { ByteReader, TruncatedError } from "../util/byte-reader.js";
import { decodeHeader, HEADER_SIZE, type NewcHeader, pad4, TRAILER_NAME } from "./newc.js";

export interface CpioEntry extends NewcHeader {
  /** The body, whole; empty when the reader was told to pass over it (fileSize says its size). */
  body: Buffer;
}

export interface ReadCpioOptions {
  /**
   * Which entries' bodies to read (by name); the others are passed over, seeking when the
   * stream is a file (util/input-file's FileChunks): their headers are still read and checked.
   */
  body?: (name: string) => boolean;
}

const NO_BODY = Buffer.alloc(0);

/**
 * Reads a newc archive (one, or several concatenated as the kernel accepts) entry by entry,
 * stopping at the last trailer. Bodies are returned whole; the writer keeps them in order.
 */
export async function* readCpio(
  stream: Readable | AsyncIterable<Buffer> | Iterable<Buffer>,
  o: ReadCpioOptions = {},
): AsyncGenerator<CpioEntry> {
  const r = new ByteReader(stream as AsyncIterable<Buffer> | Iterable<Buffer>);
  try {
    yield* entries(r, o.body);
  } catch (err) {
    if (err instanceof TruncatedError) throw new Error(`truncated cpio archive ${err.message.slice(10)}`);
    throw err;
  }
}

async function* entries(r: ByteReader, wanted?: (name: string) => boolean): AsyncGenerator<CpioEntry> {
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
    h.name = nameFromBytes(nameBuf.subarray(0, Math.max(0, h.nameSize - 1)));
    let body: Buffer = NO_BODY;
    if (!wanted || wanted(h.name)) body = await r.must(h.fileSize);
    else await r.skip(h.fileSize);
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
