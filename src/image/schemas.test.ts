import assert from "node:assert/strict";
import { test } from "node:test";
import { Ajv } from "ajv";
import { AJV_OPTIONS, checkDocument, SCHEMAS } from "./schemas.js";

// The CLI compiles these without checking them against the meta-schema (schemas.ts): this is
// where they are checked, in strict mode.
test("every document schema is valid JSON Schema, compiled strictly", () => {
  const ajv = new Ajv({ ...AJV_OPTIONS, validateSchema: true });
  for (const [kind, schema] of Object.entries(SCHEMAS)) {
    assert.equal(ajv.validateSchema(schema), true, `${kind}: ${ajv.errorsText()}`);
    assert.doesNotThrow(() => ajv.compile(schema), kind);
  }
});

test("the CLI's validators still refuse a bad document, naming the field", () => {
  assert.throws(
    () => checkDocument("imageManifest", { config: { digest: "sha256:x", size: 1 }, layers: [] }, "m.json"),
    { message: "m.json: config.digest is not a valid digest" },
  );
});
