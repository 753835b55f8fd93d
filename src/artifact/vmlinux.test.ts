import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { elfArch } from "../elf/elf.js";
import { fetchKernel } from "../kernel/fetch.js";
import { bzImagePayload, extractVmlinux, type KernelCompression } from "./vmlinux.js";

let work = "";
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-vmlinux-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** An ELF64 header for `machine` (62 x86-64, 183 aarch64) followed by `body`. */
function fakeElf(machine: number, body: Buffer): Buffer {
  const h = Buffer.alloc(64);
  h.write("\x7fELF", 0, "latin1");
  h[4] = 2; // 64-bit
  h[5] = 1; // little-endian
  h[6] = 1;
  h.writeUInt16LE(2, 16); // ET_EXEC
  h.writeUInt16LE(machine, 18);
  return Buffer.concat([h, body]);
}

/** Compressed as Kbuild does it (arch/x86/boot/compressed/Makefile), by Debian's tools. */
const COMPRESS: Record<Exclude<KernelCompression, "elf" | "lzo">, [string, string[]]> = {
  gzip: ["gzip", ["-9", "-n", "-c"]],
  xz: ["xz", ["--check=crc32", "--lzma2=dict=1MiB", "-c"]],
  zstd: ["zstd", ["-19", "-q", "-c"]],
  lz4: ["lz4", ["-l", "-9", "-q", "-c"]],
  lzma: ["xz", ["--format=lzma", "-9", "-c"]],
  bzip2: ["bzip2", ["-9", "-c"]],
};

/**
 * A bzImage as the boot protocol lays it out: setup sectors holding the header, then the
 * payload at payload_offset, with Kbuild's 4-byte size after every format but gzip.
 */
function fakeBzImage(payload: Buffer, opts: { size?: number; version?: number } = {}): Buffer {
  const setupSects = 1;
  const payloadOffset = 0x100;
  const tail = opts.size === undefined ? Buffer.alloc(0) : Buffer.alloc(4);
  if (opts.size !== undefined) tail.writeUInt32LE(opts.size);
  const image = Buffer.alloc((setupSects + 1) * 512 + payloadOffset);
  image[0x1f1] = setupSects;
  image.write("HdrS", 0x202, "latin1");
  image.writeUInt16LE(opts.version ?? 0x20f, 0x206);
  image.writeUInt32LE(payloadOffset, 0x248);
  image.writeUInt32LE(payload.length + tail.length, 0x24c);
  return Buffer.concat([image, payload, tail, Buffer.alloc(64, 0xcc)]);
}

function compress(kind: keyof typeof COMPRESS, data: Buffer): Buffer {
  const [cmd, args] = COMPRESS[kind];
  return execFileSync(cmd, args, { input: data, maxBuffer: 64 << 20 });
}

describe("vmlinux from a bzImage", () => {
  // Half text, half random bytes: compressible, yet the compressed form is not tiny.
  const vmlinux = fakeElf(
    62,
    Buffer.concat([Buffer.from("slimroot test kernel ".repeat(4000)), randomBytes(60_000)]),
  );
  const gz = compress("gzip", vmlinux);

  for (const kind of Object.keys(COMPRESS) as (keyof typeof COMPRESS)[]) {
    test(`${kind} payload: found by its magic, decompressed, checked`, async () => {
      const image = fakeBzImage(compress(kind, vmlinux), kind === "gzip" ? {} : { size: vmlinux.length });
      assert.equal(bzImagePayload(image, "k").compression, kind);
      const out = join(work, `vmlinux-${kind}`);
      await extractVmlinux(image, "k", out);
      assert.deepEqual(await readFile(out), vmlinux);
    });
  }

  test("a payload that is not an x86-64 ELF, or not the size Kbuild recorded: one line, nothing written", async () => {
    const cases: [string, Buffer, RegExp][] = [
      [
        "arm64 ELF",
        fakeBzImage(compress("lz4", fakeElf(183, Buffer.alloc(1000))), { size: 1064 }),
        /x86-64 ELF/,
      ],
      ["not an ELF", fakeBzImage(compress("xz", Buffer.alloc(5000, 7)), { size: 5000 }), /x86-64 ELF/],
      [
        "wrong size",
        fakeBzImage(compress("zstd", vmlinux), { size: vmlinux.length + 1 }),
        /decompressed to \d+ bytes, the image says/,
      ],
      ["truncated", fakeBzImage(gz.subarray(0, gz.length >> 1)), /k: gzip payload: /],
      [
        "unknown magic",
        fakeBzImage(Buffer.alloc(100, 0x42)),
        /unknown payload compression \(first bytes 42424242\)/,
      ],
      ["old boot protocol", fakeBzImage(gz, { version: 0x207 }), /boot protocol 2\.7 .*2\.08\+/],
      ["no header", Buffer.alloc(4096), /not a bzImage/],
    ];
    const dir = await mkdtemp(join(work, "bad-"));
    for (const [what, image, message] of cases) {
      const err = await extractVmlinux(image, "k", join(dir, "vmlinux")).then(
        () => undefined,
        (e: Error) => e,
      );
      assert.ok(err, `${what}: accepted`);
      assert.match(err.message, message, what);
      assert.doesNotMatch(err.message, /\n/, what);
    }
    assert.deepEqual(await readdir(dir), [], "no output and no temp file left");
  });

  test("Debian's cloud kernel (bzImage, lz4 payload) gives an x86-64 ELF vmlinux", {
    timeout: 600_000,
  }, async () => {
    const k = await fetchKernel({ arch: "amd64" });
    const image = await readFile(join(k.dir, k.manifest.kernel));
    const p = bzImagePayload(image, k.manifest.kernel);
    const out = join(work, "vmlinux-debian");
    await extractVmlinux(image, k.manifest.kernel, out);
    const bytes = await readFile(out);
    assert.equal(elfArch(bytes), "amd64");
    assert.equal(bytes.readUInt16LE(16), 2, "ET_EXEC");
    assert.equal(bytes.length, p.size, "the size Kbuild recorded");
    assert.ok(bytes.length > image.length, "larger than the compressed image");
  });
});
