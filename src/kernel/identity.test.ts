import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import { hostExecutable } from "../util/host-path.js";
import { parseKernelConfig } from "./config.js";
import { bzImageVersion, configPageSize, imagePageSize, readKernelIdentity } from "./identity.js";

/** A bzImage header (boot protocol 2.15) whose kernel_version points at `version`. */
function bzImage(version: string): Buffer {
  const b = Buffer.alloc(0x4000);
  b.write("HdrS", 0x202, "latin1");
  b.writeUInt16LE(0x020f, 0x206);
  b.writeUInt16LE(0x3000 - 0x200, 0x20e);
  b.write(`${version}\0`, 0x3000, "latin1");
  return b;
}

/** An arm64 Image header with page-size bits `bits` (flags 1-2), then `body`. */
function arm64Image(bits: number, body = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(64);
  b.writeUInt32LE(0x644d5241, 56);
  b.writeBigUInt64LE(BigInt((bits << 1) | 8), 24);
  return Buffer.concat([b, body]);
}

const DEBIAN =
  "6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3";

test("a bzImage's version string comes from its header", () => {
  assert.equal(bzImageVersion(bzImage(DEBIAN)), DEBIAN);
  assert.equal(bzImageVersion(Buffer.alloc(0x1000)), undefined);
  // Not a version (a header pointing into garbage).
  assert.equal(bzImageVersion(bzImage("\x01\x02junk")), undefined);
});

test("page size: the config's ARM64_*K_PAGES, x86's 4 KiB, an arm64 Image header's flags", () => {
  assert.equal(configPageSize(parseKernelConfig("CONFIG_ARM64_64K_PAGES=y\n")), 65536);
  assert.equal(configPageSize(parseKernelConfig("CONFIG_ARM64_16K_PAGES=y\n")), 16384);
  assert.equal(configPageSize(parseKernelConfig("CONFIG_X86_64=y\n")), 4096);
  assert.equal(configPageSize(parseKernelConfig("CONFIG_FOO=y\n")), undefined);
  assert.equal(imagePageSize(arm64Image(1)), 4096);
  assert.equal(imagePageSize(arm64Image(3)), 65536);
  assert.equal(imagePageSize(arm64Image(0)), undefined);
});

test("a kernel file's identity: release and builder from its version string, page size, a manifest beside it", async () => {
  const dir = await mkdtemp(join(tmpdir(), "slimroot-identity-"));
  try {
    const bz = join(dir, "vmlinuz");
    await writeFile(bz, bzImage(DEBIAN));
    const debian = await readKernelIdentity(bz, { arch: "amd64", format: "bzImage" });
    assert.deepEqual(debian, {
      arch: "amd64",
      release: "6.1.0-57-cloud-amd64",
      builder: "debian",
      pageSize: 4096,
      pageSizeKnown: true,
    });
    // An arm64 Image.gz: the banner is found in the inflated bytes, past a printk format and a chunk edge.
    const body = Buffer.concat([
      Buffer.from("Linux version %s (%s@%s)\n"),
      Buffer.alloc(200_000, 0x41),
      Buffer.from("Linux version 6.8.0-31-generic (buildd@lcy02) (gcc 13) #31 SMP\n"),
    ]);
    const gz = join(dir, "Image.gz");
    await writeFile(gz, gzipSync(arm64Image(2, body)));
    const ubuntu = await readKernelIdentity(gz, { arch: "arm64", format: "arm64-image", gzip: true });
    assert.equal(ubuntu.release, "6.8.0-31-generic");
    assert.equal(ubuntu.builder, undefined);
    // The header of a gzip file is not an Image's: the page size is assumed.
    assert.deepEqual([ubuntu.pageSize, ubuntu.pageSizeKnown], [4096, false]);
    const image = join(dir, "Image");
    await writeFile(image, arm64Image(3, body));
    const big = await readKernelIdentity(image, { arch: "arm64", format: "arm64-image" });
    assert.deepEqual([big.pageSize, big.pageSizeKnown], [65536, true]);
    // In a kernel directory the manifest says who built it; an embedded app says slimroot.
    await writeFile(
      join(dir, "manifest.json"),
      JSON.stringify({
        format: 1,
        arch: "arm64",
        version: "6.1.192",
        source: "slimroot kernel build from debian linux-source-6.1 6.1.192-3",
        kernel: "Image",
        modules: [],
      }),
    );
    const ours = await readKernelIdentity(image, { arch: "arm64", format: "arm64-image" });
    assert.deepEqual([ours.release, ours.builder], ["6.1.192", "slimroot"]);
    const other = await readKernelIdentity(
      gz,
      { arch: "arm64", format: "arm64-image", gzip: true },
      { embedded: true },
    );
    assert.equal(other.builder, "slimroot");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("an ELF vmlinux's version string is read in its .rodata (linux_banner's section), else anywhere in the file", {
  skip: hostExecutable("gcc") ? false : "gcc is needed to lay out an ELF (apt-get install gcc)",
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), "slimroot-identity-"));
  try {
    /** An x86-64 ELF with each string in its section, in file order .text, .rodata, .data. */
    const elf = async (name: string, strings: Record<string, string>) => {
      const asm = Object.entries(strings).flatMap(([sec, text]) => [`.section ${sec}`, `.asciz "${text}"`]);
      await writeFile(
        join(dir, `${name}.S`),
        [...asm, ".text", ".globl _start", "_start: jmp _start", ""].join("\n"),
      );
      execFileSync("gcc", ["-nostdlib", "-static", "-no-pie", "-o", join(dir, name), join(dir, `${name}.S`)]);
      return readKernelIdentity(join(dir, name), { arch: "amd64", format: "elf" });
    };
    const banner = "Linux version 6.1.192 (root@vm) (gcc 12) #2 SMP";
    // A look-alike in the code, before .rodata in the file, is not the kernel's banner.
    const ours = await elf("vmlinux", { ".text": "Linux version 9.9.9 (x@y) #1", ".rodata": banner });
    assert.equal(ours.release, "6.1.192");
    const elsewhere = await elf("vmlinux-data", { ".data": banner });
    assert.equal(elsewhere.release, "6.1.192");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
