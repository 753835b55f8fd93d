import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { PACKAGE_ROOT } from "../guest/init-binary.js";
import { fetchKernel } from "../kernel/fetch.js";
import { readHead } from "../util/input-file.js";
import { KERNEL_HEAD_BYTES, kernelKind } from "./kernel-magic.js";

describe("kernel architecture from the bytes", { timeout: 300_000 }, () => {
  test("Debian's amd64 vmlinuz is a bzImage, its arm64 vmlinuz an Image", async () => {
    for (const arch of ["amd64", "arm64"] as const) {
      const { dir, manifest } = await fetchKernel({ arch });
      const kind = kernelKind(await readHead(join(dir, manifest.kernel), KERNEL_HEAD_BYTES));
      assert.deepEqual(kind, { arch, format: arch === "amd64" ? "bzImage" : "arm64-image" });
    }
  });

  test("an arm64 Image.gz is looked into", async () => {
    const { dir, manifest } = await fetchKernel({ arch: "arm64" });
    const head = await readHead(join(dir, manifest.kernel), 64 * 1024);
    const gz = gzipSync(head).subarray(0, KERNEL_HEAD_BYTES);
    assert.deepEqual(kernelKind(gz), { arch: "arm64", format: "arm64-image", gzip: true });
  });

  test("ELF files by e_machine (our init binaries)", async () => {
    for (const arch of ["amd64", "arm64"] as const) {
      const head = await readFile(join(PACKAGE_ROOT, "init", "build", `init-${arch}`));
      assert.deepEqual(kernelKind(head), { arch, format: "elf" });
    }
  });

  test("anything else is not a kernel", () => {
    assert.equal(kernelKind(Buffer.from("#!/bin/sh\necho hi\n")), undefined);
    assert.equal(kernelKind(Buffer.alloc(0)), undefined);
    assert.equal(kernelKind(gzipSync(Buffer.from("not a kernel at all"))), undefined);
    const riscv = Buffer.alloc(64);
    riscv.write("\x7fELF", 0, "latin1");
    riscv[4] = 2;
    riscv[5] = 1;
    riscv.writeUInt16LE(243, 18);
    assert.equal(kernelKind(riscv), undefined);
  });
});
