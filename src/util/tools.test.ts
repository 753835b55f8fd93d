import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { EnvironmentError } from "./errors.js";
import { requireTools, toolNotFound, toolPackage } from "./tools.js";

test("tools: each named with its Debian package; all missing ones in one line, exit 2", async () => {
  assert.equal(toolPackage("xz"), "xz-utils");
  assert.equal(toolPackage("qemu-system-aarch64"), "qemu-system-arm");
  assert.equal(toolPackage("unsquashfs"), "squashfs-tools");
  assert.equal(toolNotFound("flock"), "flock not found on PATH (apt-get install util-linux)");
  assert.equal(toolPackage("aarch64-linux-gnu-gcc"), "gcc-aarch64-linux-gnu");
  assert.equal(toolPackage("make"), "build-essential", "kbuild builds host programs: libc6-dev too");
  assert.equal(toolPackage("constructor"), "constructor", "only the table's own keys");
  assert.equal(toolNotFound("mkfs.erofs"), "mkfs.erofs not found on PATH (apt-get install erofs-utils)");
  const bin = await mkdtemp(join(tmpdir(), "slimroot-tools-unit-"));
  try {
    await writeFile(join(bin, "fakeroot"), "#!/bin/sh\n");
    await chmod(join(bin, "fakeroot"), 0o755);
    const env = { PATH: bin };
    requireTools("x", ["fakeroot"], env);
    assert.throws(
      () => requireTools("build --format ext4", ["fakeroot", "setfattr", "mke2fs", "debugfs", "mke2fs"], env),
      (err: Error) =>
        err instanceof EnvironmentError &&
        err.message ===
          "build --format ext4 needs setfattr, mke2fs and debugfs, not found on PATH: apt-get install attr e2fsprogs",
    );
  } finally {
    await rm(bin, { recursive: true, force: true });
  }
});
