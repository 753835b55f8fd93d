import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { test } from "node:test";
import fc from "fast-check";
import { FootprintCounter } from "../cpio/footprint.js";
import { writeCpio } from "../cpio/writer.js";
import { parseKernelConfig } from "../kernel/config.js";
import type { KernelIdentity } from "../kernel/identity.js";
import { bufferContent } from "../tree/spool.js";
import { type Inode, Tree } from "../tree/tree.js";
import {
  archivesFootprint,
  chooseMemoryMiB,
  defaultMemoryMiB,
  type Footprint,
  keptMiB,
  kernelRule,
  MemoryTooSmall,
  MIN_DEFAULT_MIB,
  memoryNeededMiB,
  memoryWarning,
} from "./memory.js";

const file = (size: number): Inode => ({
  kind: "file",
  mode: 0o644,
  uid: 0,
  gid: 0,
  mtime: 0,
  content: bufferContent(Buffer.alloc(size, 1)),
});

test("footprint: files in whole pages, hard links once, a page per long symlink, every inode", async () => {
  const tree = new Tree();
  tree.ensureDir("d", 0);
  for (const [name, size] of [
    ["d/empty", 0],
    ["d/one", 1],
    ["d/page", 4096],
    ["d/page1", 4097],
  ] as const)
    tree.set(name, { inode: file(size), layer: 0 });
  const shared = file(10_000); // 3 pages, linked twice
  tree.set("d/link1", { inode: shared, layer: 0 });
  tree.set("d/link2", { inode: shared, layer: 0 });
  const link = (target: string): Inode => ({
    kind: "symlink",
    mode: 0o777,
    uid: 0,
    gid: 0,
    mtime: 0,
    target,
  });
  tree.set("d/short", { inode: link("x".repeat(127)), layer: 0 });
  tree.set("d/long", { inode: link("x".repeat(128)), layer: 0 });
  const dir = await mkdtemp(join(tmpdir(), "slimroot-memory-"));
  try {
    const cpio = join(dir, "image.cpio");
    const written = new FootprintCounter();
    await writeFile(cpio, await buffer(writeCpio(tree, { clampMtime: 0, onHeader: (h) => written.add(h) })));
    const f = await archivesFootprint([cpio], 12345);
    // What the build records in the .why, counted as it writes, is what is read back.
    assert.deepEqual({ ...written.result(), initrdBytes: 12345 }, f);
    // pages: empty 0, one 1, page 1, page1 2, shared 3, long symlink 1
    assert.equal(f.tmpfsBytes, 8 * 4096);
    // with 64 KiB pages: one, page, page1, shared and the long symlink take a page each
    assert.equal(f.largePages?.[65536], 5 * 65536);
    // ".", d, 4 files, one shared inode, 2 symlinks
    assert.equal(f.inodes, 9);
    assert.equal(f.initrdBytes, 12345);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

const id = (o: Partial<KernelIdentity> & Pick<KernelIdentity, "arch">): KernelIdentity => ({
  pageSize: 4096,
  pageSizeKnown: true,
  ...o,
});
const debianAmd64 = kernelRule(id({ arch: "amd64", release: "6.1.0-57-cloud-amd64", builder: "debian" }));
const slimrootAmd64 = kernelRule(id({ arch: "amd64", release: "6.1.192", builder: "slimroot" }));
const slimrootArm64 = kernelRule(id({ arch: "arm64", release: "6.1.192", builder: "slimroot" }));

const footprint = fc.record({
  tmpfsBytes: fc.integer({ min: 0, max: 8 << 30 }),
  inodes: fc.integer({ min: 0, max: 2_000_000 }),
  initrdBytes: fc.integer({ min: 0, max: 8 << 30 }),
}) as fc.Arbitrary<Footprint>;

test("the minimum fits the files in the rootfs (half of what the kernel counts); the default leaves headroom", () => {
  fc.assert(
    fc.property(footprint, fc.constantFrom("amd64" as const, "arm64" as const), (f, arch) => {
      const debian = kernelRule(id({ arch, release: `6.1.0-57-cloud-${arch}`, builder: "debian" }));
      const need = memoryNeededMiB(f, arch, 0, debian);
      const roomy = memoryNeededMiB(f, arch, 16, debian);
      const files = Math.max(f.tmpfsBytes, f.inodes * 4096) / (1 << 20);
      // the measured amd64 kernel share (41.5 MiB + M/58.5) is below what the rule assumes
      const kernel = arch === "amd64" ? 41.5 + need / 58.5 : 91.8 + need / 52.2;
      assert.ok((need - kernel - f.initrdBytes / (1 << 20)) / 2 >= files - 1e-9);
      const roomyKernel = arch === "amd64" ? 41.5 + roomy / 58.5 : 91.8 + roomy / 52.2;
      assert.ok((roomy - roomyKernel - f.initrdBytes / (1 << 20)) / 2 >= files + 16 - 1e-9);
      const def = defaultMemoryMiB(f, arch, debian);
      assert.ok(def >= roomy + 64 && def >= MIN_DEFAULT_MIB && def % 32 === 0);
      assert.equal(chooseMemoryMiB(f, arch, need, "img", debian), need);
      assert.throws(() => chooseMemoryMiB(f, arch, need - 1, "img", debian), MemoryTooSmall);
    }),
    { numRuns: 500 },
  );
});

test("a small image gets the old default, 256 MiB", () => {
  assert.equal(defaultMemoryMiB({ tmpfsBytes: 5 << 20, inodes: 300, initrdBytes: 2 << 20 }, "amd64"), 256);
});

test("--mem too small: one line naming the memory needed", () => {
  const f = { tmpfsBytes: 170_196_992, inodes: 463, initrdBytes: 169_305_832 };
  assert.throws(
    () => chooseMemoryMiB(f, "amd64", 256, "big.cpio.gz", debianAmd64),
    (err: Error) =>
      /^--mem 256: big\.cpio\.gz needs at least 5\d\d MiB of guest memory \(its 163 MiB of files/.test(
        err.message,
      ) && !err.message.includes("\n"),
  );
});

test("the known kernels: Debian's cloud kernels by release and builder, slimroot's by builder and release", () => {
  assert.deepEqual(
    [debianAmd64, slimrootAmd64, slimrootArm64].map((r) => [r.name, keptMiB(r, 1024), r.measured]),
    [
      ["Debian 12 cloud kernel 6.1 (amd64)", 44 + 1024 / 58, true],
      ["slimroot kernel 6.1 (amd64)", 14.5 + 16, true],
      ["slimroot kernel 6.1 (arm64)", 8 + 16, true],
    ],
  );
  const arm = kernelRule(id({ arch: "arm64", release: "6.1.0-41-cloud-arm64", builder: "debian" }));
  assert.equal(arm.name, "Debian 12 cloud kernel 6.1 (arm64)");
  assert.ok(arm.measured);
  // The same release from elsewhere, another release, another arch's name: not measured.
  for (const other of [
    id({ arch: "amd64", release: "6.1.0-57-cloud-amd64" }),
    id({ arch: "amd64", release: "6.12.9-cloud-amd64", builder: "debian" }),
    id({ arch: "arm64", release: "6.1.0-57-cloud-amd64", builder: "debian" }),
    id({ arch: "amd64", release: "6.6.3", builder: "slimroot" }),
    id({ arch: "amd64", builder: "slimroot" }),
  ])
    assert.equal(kernelRule(other).measured, false, JSON.stringify(other));
});

test("a slimroot kernel whose config turns on what reserves memory at boot is not the measured one", () => {
  const config = parseKernelConfig("CONFIG_X86_64=y\nCONFIG_CMA=y\nCONFIG_CMA_SIZE_MBYTES=256\n");
  const r = kernelRule(id({ arch: "amd64", release: "6.1.192", builder: "slimroot", config }));
  assert.equal(r.measured, false);
  assert.match(r.name, /CONFIG_CMA/);
  const plain = parseKernelConfig("CONFIG_X86_64=y\n# CONFIG_CMA is not set\nCONFIG_EXT4_FS_SECURITY=y\n");
  assert.ok(
    kernelRule(id({ arch: "amd64", release: "6.1.192", builder: "slimroot", config: plain })).measured,
  );
});

test("slimroot's kernels: the minimum is at or above what the measured kernel kept at each -m", () => {
  // What the kernel kept (MiB) when it mounted the rootfs, by -m (docs/run.md, 2026-12-02).
  const kept = {
    amd64: {
      32: 15.266,
      64: 15.313,
      128: 15.406,
      256: 17.602,
      266: 19.6,
      512: 21.977,
      1024: 28.727,
      2048: 44.227,
    },
    arm64: { 32: 8.879, 64: 8.926, 128: 9.02, 256: 11.207, 512: 15.582, 1024: 22.332, 2048: 37.832 },
  };
  for (const [rule, arch] of [
    [slimrootAmd64, "amd64"],
    [slimrootArm64, "arm64"],
  ] as const)
    for (const [m, k] of Object.entries(kept[arch])) {
      const predicted = keptMiB(rule, Number(m));
      assert.ok(predicted >= k + 0.4 && predicted - k < 3, `${arch} -m ${m}: ${predicted} vs ${k}`);
    }
});

test("page size: files round up to the kernel's pages, from 4 KiB to 64 KiB", () => {
  // 1000 one-byte files: 4 MiB in 4 KiB pages, 64 MiB in 64 KiB ones.
  const f: Footprint = {
    tmpfsBytes: 1000 * 4096,
    inodes: 1000,
    initrdBytes: 0,
    largePages: { 65536: 1000 * 65536 },
  };
  const big = kernelRule(id({ arch: "arm64", release: "6.1.192", builder: "slimroot", pageSize: 65536 }));
  assert.equal(big.pageSize, 65536);
  assert.equal(big.measured, false);
  assert.ok(memoryNeededMiB(f, "arm64", 0, big) >= 94 + 2 * 64);
  // Without a count for that size the bound is every file a page longer.
  const { largePages: _, ...noCount } = f;
  assert.ok(memoryNeededMiB(noCount, "arm64", 0, big) >= memoryNeededMiB(f, "arm64", 0, big));
});

test("an unmeasured kernel: a warning when sized automatically, and --mem refused only below the files alone", () => {
  const unknown = kernelRule(id({ arch: "amd64", release: "6.8.0-31-generic" }));
  const f = { tmpfsBytes: 100 << 20, inodes: 200, initrdBytes: 40 << 20 };
  const def = chooseMemoryMiB(f, "amd64", undefined, "img", unknown);
  // As generous as for Debian's kernel, the largest measured.
  assert.equal(def, defaultMemoryMiB(f, "amd64", debianAmd64));
  const warning = memoryWarning(unknown, "/boot/vmlinuz", def, undefined);
  assert.match(
    warning ?? "",
    /^warning: kernel \/boot\/vmlinuz \(release 6\.8\.0-31-generic, builder unknown, 4 KiB pages\) .* estimate .*--mem overrides$/,
  );
  assert.equal(memoryWarning(unknown, "k", 300, 300), undefined);
  assert.equal(memoryWarning(slimrootAmd64, "k", 300, undefined), undefined);
  // 40 MiB of initrd + 2 x 100 MiB of files: the kernel's own share is not held against --mem.
  assert.equal(chooseMemoryMiB(f, "amd64", 240, "img", unknown), 240);
  assert.throws(
    () => chooseMemoryMiB(f, "amd64", 239, "img", unknown),
    /needs at least 240 MiB .*files alone/,
  );
  assert.throws(() => chooseMemoryMiB(f, "amd64", 240, "img", debianAmd64), MemoryTooSmall);
});

test("a slimroot kernel is held to its own measured share: small --mem values stay possible", () => {
  // A 3 MiB traced nginx: Debian's kernel needs more than 50 MiB before the files; slimroot's
  // kernel keeps about 15 MiB.
  const f = { tmpfsBytes: 10 << 20, inodes: 200, initrdBytes: 3 << 20 };
  assert.throws(() => chooseMemoryMiB(f, "amd64", 64, "img", debianAmd64), MemoryTooSmall);
  // 14.5 + 2 (one section) + 3 + 2 x 10
  assert.equal(memoryNeededMiB(f, "amd64", 0, slimrootAmd64), 40);
  assert.equal(chooseMemoryMiB(f, "amd64", 40, "img", slimrootAmd64), 40);
  assert.throws(() => chooseMemoryMiB(f, "amd64", 39, "img", slimrootAmd64), MemoryTooSmall);
  // Just past a section the next 2 MiB of page structs count: 110 MiB of files need 4 more than 100.
  const at = (mib: number) => memoryNeededMiB({ ...f, tmpfsBytes: mib << 20 }, "amd64", 0, slimrootAmd64);
  assert.equal(at(50), 14.5 + 2 + 3 + 100 + 0.5);
  assert.equal(at(55), 14.5 + 4 + 3 + 110 + 0.5);
});
