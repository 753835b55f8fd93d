import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { pipeline } from "node:stream/promises";
import { after, before, test } from "node:test";
import { gunzipSync } from "node:zlib";
import fc from "fast-check";
import type { Arch } from "../arch/arch.js";
import { type Compression, compressor, decompressor } from "./compress.js";
import { GZIP_BLOCK } from "./gzip.js";
import { detectCompression } from "./magic.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "slimroot-compress-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Compressible but not trivial: text-like lines with random words, plus a random tail. */
function sample(size: number): Buffer {
  const words = ["init", "nginx", "lib", "usr", "x86_64", "linux", "gnu", "so", "etc", "passwd"];
  let s = "";
  let i = 0;
  while (s.length < size) s += `${words[(i * 7) % words.length]}/${words[(i * 3) % words.length]}-${i++}\n`;
  return Buffer.concat([Buffer.from(s.slice(0, size)), randomBytes(4096)]);
}

async function compress(kind: Compression, data: Buffer, arch?: Arch): Promise<Buffer> {
  const c = compressor(kind, arch);
  const out = buffer(c);
  await pipeline(Readable.from([data]), c);
  return out;
}

const TOOL_TEST: Record<Exclude<Compression, "none">, string[]> = {
  gzip: ["gzip", "-t"],
  zstd: ["zstd", "-t", "-q"],
  xz: ["xz", "-t"],
  lz4: ["lz4", "-t", "-q"],
};

for (const kind of ["gzip", "zstd", "xz", "lz4"] as const) {
  test(`${kind}: its standard tool accepts and restores it, and our decompressor too`, async () => {
    const data = sample(700_000);
    const packed = await compress(kind, data);
    assert.equal(detectCompression(packed), kind);
    const file = join(dir, `x.${kind}`);
    await writeFile(file, packed);
    const [tool, ...args] = TOOL_TEST[kind];
    execFileSync(tool!, [...args, file]);
    const d = decompressor(kind, file);
    const back = buffer(d);
    await pipeline(Readable.from([packed]), d);
    assert.ok((await back).equals(data));
    assert.ok((await compress(kind, data)).equals(packed), "deterministic");
  });
}

test("xz uses CRC32 checks, the only ones the kernel's decoder knows", async () => {
  const file = join(dir, "check.xz");
  await writeFile(file, await compress("xz", sample(100_000)));
  const robot = execFileSync("xz", ["--robot", "--list", file]).toString();
  const fileLine = robot.split("\n").find((l) => l.startsWith("file\t"))!;
  assert.equal(fileLine.split("\t")[6], "CRC32");
});

test("xz for amd64 uses the x86 BCJ filter and an 8 MiB dictionary; arm64 gets no BCJ", async () => {
  const filters = async (arch: Arch) => {
    const file = join(dir, `bcj-${arch}.xz`);
    await writeFile(file, await compress("xz", sample(100_000), arch));
    const robot = execFileSync("xz", ["--robot", "--list", "-vv", file]).toString();
    return robot.split("\n").find((l) => l.startsWith("block\t"))!;
  };
  const amd64 = await filters("amd64");
  assert.match(amd64, /--x86/);
  assert.match(amd64, /dict=8MiB/);
  const arm64 = await filters("arm64");
  assert.doesNotMatch(arm64, /--x86|--arm/);
  assert.match(arm64, /dict=8MiB/);
});

test("lz4 uses the legacy frame (magic 0x184C2102) the kernel unpacks", async () => {
  const packed = await compress("lz4", sample(100_000));
  assert.equal(packed.readUInt32LE(0), 0x184c2102);
});

test("zstd keeps its window at or under 8 MiB", async () => {
  const file = join(dir, "window.zst");
  await writeFile(file, await compress("zstd", sample(12_000_000)));
  const info = execFileSync("zstd", ["-lv", file]).toString();
  const m = /Window Size:\s*([\d.]+)\s*(KiB|MiB|B)/.exec(info);
  assert.ok(m, info);
  const bytes = Number(m[1]) * (m[2] === "MiB" ? 2 ** 20 : m[2] === "KiB" ? 1024 : 1);
  assert.ok(bytes <= 8 * 2 ** 20, `window ${m[0]}`);
});

test("parallel gzip is a single valid member for any input split", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 200_000 }), { maxLength: 6 }), async (chunks) => {
      const data = Buffer.concat(chunks.map((c) => Buffer.from(c)));
      const c = compressor("gzip");
      const out = buffer(c);
      await pipeline(Readable.from(chunks.map((x) => Buffer.from(x))), c);
      assert.ok(gunzipSync(await out).equals(data));
    }),
    { numRuns: 30 },
  );
});

test("parallel gzip gives the same bytes however its input is split (blocks cut from views or joined)", async () => {
  const data = sample(4 * GZIP_BLOCK + 100_000);
  const whole = await compress("gzip", data);
  const split = async (cuts: number[]) => {
    const at = [0, ...[...new Set(cuts)].sort((a, b) => a - b), data.length];
    const c = compressor("gzip");
    const out = buffer(c);
    await pipeline(Readable.from(at.slice(1).map((end, i) => data.subarray(at[i]!, end))), c);
    return out;
  };
  // Exactly on the block boundaries, and a chunk of two blocks.
  assert.ok((await split([GZIP_BLOCK, 2 * GZIP_BLOCK, 4 * GZIP_BLOCK])).equals(whole));
  await fc.assert(
    fc.asyncProperty(fc.array(fc.integer({ min: 0, max: data.length }), { maxLength: 12 }), async (cuts) => {
      assert.ok((await split(cuts)).equals(whole));
    }),
    { numRuns: 25 },
  );
});
