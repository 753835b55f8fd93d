/** The RAM in use a snapshot is judged against, from the init's answer to "freeze". */
import assert from "node:assert/strict";
import { test } from "node:test";
import { inUseKib } from "./take.js";

test("in use: the guest's RAM less MemFree, so the kernel's own pages count", () => {
  // 256 MiB guest, MemTotal - MemFree = 20,000 KiB, MemFree = 220,000 KiB.
  assert.equal(inUseKib("20000 220000", 256), 256 * 1024 - 220000);
});

test("in use: an init of an earlier slimroot answers MemTotal - MemFree alone", () => {
  assert.equal(inUseKib("20000", 256), 20000);
  assert.equal(inUseKib("", 256), 0);
  // A MemFree above the guest's RAM is not believed.
  assert.equal(inUseKib("20000 999999", 256), 20000);
});
