/**
 * The guest's facts have one home in src/guest/layout.ts: init/build/guest.h is generated from
 * it (scripts/guest-header.ts) and the C that cannot take a macro is checked against it here.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { API_MOUNTS, GUEST_MOUNTS, SCRATCH_DIRS } from "../src/guest/layout.js";
import { repoRoot } from "./support/kernel.js";

const source = (file: string) => readFileSync(join(repoRoot, "init", file), "utf8");

test("init.c mounts the API filesystems where layout.ts says, and the scratch tmpfs through the header", () => {
  const table = /mounts\[\] = \{([\s\S]*?)\n\};/.exec(source("init.c"))?.[1] ?? "";
  const topLevel = [...table.matchAll(/\{"\w+", "(\/[^/"]+)"/g)].map((m) => m[1]);
  assert.deepEqual(
    topLevel,
    [...API_MOUNTS].map((d) => `/${d}`),
  );
  assert.match(table, /^\s*SCRATCH_DIRS$/m);
});

test("root.c moves exactly the guest's mounts, from the generated header", () => {
  const root = source("root.c");
  assert.match(root, /moved\[\] = \{API_MOUNTS, SCRATCH_DIRS\}/);
  assert.doesNotMatch(root, /#define (RUN_CONF|APP_CONF|REPORT_KEY)\b/);
  assert.deepEqual([...GUEST_MOUNTS], [...API_MOUNTS, ...SCRATCH_DIRS.keys()]);
});
