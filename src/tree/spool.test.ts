import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { buffer } from "node:stream/consumers";
import { test } from "node:test";
import fc from "fast-check";
import { type Content, Spool } from "./spool.js";

async function* chunked(data: Buffer, cuts: number[]): AsyncGenerator<Buffer> {
  const at = [0, ...cuts.filter((c) => c < data.length).sort((a, b) => a - b), data.length];
  for (let i = 1; i < at.length; i++) yield data.subarray(at[i - 1]!, at[i]!);
}

test("the spool gives back every body as appended, across its write-behind buffers, read at any time", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.record({
          // Up to 2.5 MiB: bodies inside one 1 MiB buffer, across two, and across three.
          size: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 2_600_000 })),
          cuts: fc.array(fc.nat(2_600_000), { maxLength: 5 }),
          readNow: fc.boolean(),
        }),
        { maxLength: 8 },
      ),
      async (bodies) => {
        const spool = await Spool.create();
        try {
          const kept: [Buffer, Content][] = [];
          for (const b of bodies) {
            const data = randomBytes(b.size);
            const content = await spool.append(chunked(data, b.cuts));
            assert.equal(content.size, data.length);
            // Read while later bytes are still staged or being written.
            if (b.readNow) assert.ok((await buffer(content.open())).equals(data));
            kept.push([data, content]);
          }
          for (const [data, content] of kept) assert.ok((await buffer(content.open())).equals(data));
        } finally {
          await spool.dispose();
        }
      },
    ),
    { numRuns: 15 },
  );
});
