import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { nameBytes, nameFromBytes } from "./path.js";

test("names round-trip their bytes, so different bytes stay different names", () => {
  // Bytes biased towards UTF-8 lead and continuation bytes, where decoders go wrong.
  const byte = fc.oneof(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0x80, max: 0xf4 }));
  fc.assert(
    fc.property(fc.array(byte, { maxLength: 24 }), fc.array(byte, { maxLength: 24 }), (a, b) => {
      const x = Buffer.from(a);
      const y = Buffer.from(b);
      assert.deepEqual(nameBytes(nameFromBytes(x)), x);
      if (!x.equals(y)) assert.notEqual(nameFromBytes(x), nameFromBytes(y));
    }),
    { numRuns: 5000 },
  );
  fc.assert(
    fc.property(fc.string({ unit: "grapheme" }), (s) => assert.equal(nameFromBytes(Buffer.from(s)), s)),
    { numRuns: 1000 },
  );
});
