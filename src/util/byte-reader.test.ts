import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { ByteReader, TruncatedError } from "./byte-reader.js";

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const b of it) out.push(b);
  return Buffer.concat(out);
}

/** `data` cut at `cuts` (offsets, any order, duplicates make empty chunks). */
function chunked(data: Buffer, cuts: number[]): Buffer[] {
  const at = [0, ...cuts.map((c) => c % (data.length + 1)).sort((a, b) => a - b), data.length];
  return at.slice(1).map((end, i) => data.subarray(at[i]!, end));
}

test("read, stream and skip take the same bytes however the input is chunked", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ maxLength: 2000 }),
      fc.array(fc.nat(), { maxLength: 12 }),
      fc.array(fc.tuple(fc.constantFrom("read", "stream", "skip"), fc.nat({ max: 700 })), { maxLength: 10 }),
      async (bytes, cuts, ops) => {
        const data = Buffer.from(bytes);
        const r = new ByteReader(chunked(data, cuts));
        let at = 0;
        for (const [op, n] of ops) {
          if (at + n > data.length) {
            await assert.rejects(
              op === "read" ? r.must(n) : op === "skip" ? r.skip(n) : collect(r.stream(n)),
              TruncatedError,
            );
            return;
          }
          const want = data.subarray(at, at + n);
          if (op === "read") assert.deepEqual(n === 0 ? Buffer.alloc(0) : await r.must(n), want);
          else if (op === "stream") assert.deepEqual(await collect(r.stream(n)), want);
          else await r.skip(n);
          at += n;
          assert.equal(r.offset, at);
        }
      },
    ),
  );
});

test("read copies out only what it returns when a read spans chunks", async () => {
  const big = Buffer.alloc(256 * 1024, 7);
  const r = new ByteReader([Buffer.from("ab"), big]);
  const head = await r.read(512);
  // The joined bytes are a new 512-byte buffer, not a view of a joined copy of both chunks.
  assert.equal(head!.buffer.byteLength < big.length, true);
  assert.deepEqual(head!.subarray(0, 3), Buffer.from([0x61, 0x62, 7]));
  // The rest is still the original chunk, not a copy.
  const rest = await r.read(100);
  assert.equal(rest!.buffer, big.buffer);
});
