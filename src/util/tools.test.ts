import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { EnvironmentError } from "./errors.js";
import { KERNEL_BUILD_PACKAGES, requireTools, TOOL_PACKAGES, toolNotFound, toolPackage } from "./tools.js";

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

test("the Makefile's set-up installs every package this table names (one list, checked)", async () => {
  const { readFile } = await import("node:fs/promises");
  const makefile = await readFile(new URL("../../Makefile", import.meta.url), "utf8");
  const installed = new Set(
    [...makefile.matchAll(/^APT_PACKAGES\s*[:+]?=((?:.*\\\n)*.*)$/gm)].flatMap((m) =>
      (m[1] ?? "").replace(/\\\n/g, " ").trim().split(/\s+/),
    ),
  );
  // Not installed by the set-up on purpose: gzip is Essential; bzip2 and lzop only read kernels
  // compressed that way; the x86-64 cross tools are for arm64 hosts; binutils-aarch64-linux-gnu
  // comes with gcc-aarch64-linux-gnu.
  const notInstalled = new Set([
    "gzip",
    "bzip2",
    "lzop",
    "gcc-x86-64-linux-gnu",
    "binutils-x86-64-linux-gnu",
    "binutils-aarch64-linux-gnu",
  ]);
  const named = [...Object.values(TOOL_PACKAGES), ...KERNEL_BUILD_PACKAGES];
  const missing = [...new Set(named)].filter((p) => !installed.has(p) && !notInstalled.has(p));
  assert.deepEqual(missing, [], "packages util/tools.ts names that the Makefile does not install");
});
