import { Transform, type TransformCallback } from "node:stream";
import { constants, crc32, deflateRaw } from "node:zlib";

/**
 * The input of each deflate call. Each block costs a zlib stream made on the main thread and
 * 32 KiB of dictionary hashed again; at 512 KiB rather than pigz's 128, a quarter as often:
 * the nginx tree's 176 MB archive deflated in 2.3-2.6 s instead of 2.7-2.8 s (CPU 4.5-5.1 s
 * instead of 5.0-5.4 s, 2 cores), for 0.06% more bytes. A 5 MB image is still ten blocks.
 */
export const GZIP_BLOCK = 512 * 1024;
const WINDOW = 32 * 1024;
/**
 * The most blocks being deflated at once (with this many queued, the first is awaited before
 * the next is cut): enough for libuv's four threads. Each holds its input and output; at 4 the nginx tree's build was 2% slower, at 8 it took
 * some 10 MiB more memory than at 6 for no speed (6 rounds each, 2026-12-04).
 */
const MAX_IN_FLIGHT = 6;
/**
 * Output buffer per block: a compressible 512 KiB block deflates into one (an incompressible
 * one takes two or three). Not the whole bound: each buffer counts as external memory for
 * V8, and buffers twice too large made twice the full collections.
 */
const OUT_CHUNK = 256 * 1024;
/**
 * Deflated bytes kept for the output before its writes hold the compressor back: writes go to
 * libuv's thread pool behind the queued deflate calls, and at the 16 KiB default each one
 * waited there while no new block was cut, so cores idled.
 */
const OUTPUT_AHEAD = 1024 * 1024;

function deflateBlock(data: Buffer, dictionary: Buffer | undefined, last: boolean, level: number) {
  return new Promise<Buffer>((resolve, reject) => {
    deflateRaw(
      data,
      {
        level,
        dictionary,
        // zlib's 16 KiB default took each block several thread-pool round trips and a join.
        chunkSize: OUT_CHUNK,
        // A sync flush ends each block on a byte boundary without marking it final, so the
        // raw deflate outputs of consecutive blocks concatenate into one valid stream.
        finishFlush: last ? constants.Z_FINISH : constants.Z_SYNC_FLUSH,
      },
      (err, out) => (err ? reject(err) : resolve(out)),
    );
  });
}

/**
 * gzip on all cores, pigz-style: the input is cut into GZIP_BLOCK blocks, each deflated on
 * libuv's thread pool with the previous 32 KiB as its dictionary, and the results are
 * joined in order. The output is one standard gzip member, and it does not depend on the
 * number of threads, so builds stay byte-for-byte reproducible.
 */
export function parallelGzip({ level = 6 }: { level?: number } = {}): Transform {
  // Input waiting for a full block, kept as a list of the chunks as they came: a block that
  // lies inside one chunk is deflated from a view of it, and only a block that spans chunks
  // is copied out (joining everything pending copied each byte once more, into fresh memory).
  const pending: Buffer[] = [];
  let pendingBytes = 0;
  const take = (n: number): Buffer => {
    const first = pending[0]!;
    if (first.length >= n) {
      if (first.length === n) pending.shift();
      else pending[0] = first.subarray(n);
      pendingBytes -= n;
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    for (let at = 0; at < n; ) {
      const piece = pending[0]!;
      const used = Math.min(piece.length, n - at);
      piece.copy(out, at, 0, used);
      at += used;
      if (used === piece.length) pending.shift();
      else pending[0] = piece.subarray(used);
    }
    pendingBytes -= n;
    return out;
  };
  let previous: Buffer | undefined;
  let crc = 0;
  let length = 0;
  const queue: Promise<Buffer>[] = [];
  let headerSent = false;

  const header = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, level >= 9 ? 2 : 0, 3]);

  const submit = (block: Buffer, last: boolean) => {
    crc = crc32(block, crc);
    length = (length + block.length) % 2 ** 32;
    queue.push(deflateBlock(block, previous, last, level));
    previous = block.length >= WINDOW ? block.subarray(block.length - WINDOW) : block;
  };

  return new Transform({
    readableHighWaterMark: OUTPUT_AHEAD,
    async transform(chunk: Buffer, _enc, callback: TransformCallback) {
      try {
        if (!headerSent) {
          this.push(header);
          headerSent = true;
        }
        pending.push(chunk);
        pendingBytes += chunk.length;
        // Strictly more than a block: the last block, deflated with Z_FINISH in flush(), is
        // never empty.
        while (pendingBytes > GZIP_BLOCK) {
          submit(take(GZIP_BLOCK), false);
          while (queue.length >= MAX_IN_FLIGHT) this.push(await queue.shift()!);
        }
        callback();
      } catch (err) {
        callback(err as Error);
      }
    },
    async flush(callback: TransformCallback) {
      try {
        if (!headerSent) this.push(header);
        submit(pendingBytes ? take(pendingBytes) : Buffer.alloc(0), true);
        while (queue.length) this.push(await queue.shift()!);
        const trailer = Buffer.alloc(8);
        trailer.writeUInt32LE(crc >>> 0, 0);
        trailer.writeUInt32LE(length >>> 0, 4);
        this.push(trailer);
        callback();
      } catch (err) {
        callback(err as Error);
      }
    },
  });
}
