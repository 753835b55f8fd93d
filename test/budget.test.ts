// Issue 17 item 2: every byte count is bounded before it is spent. A sparse bomb, a tree
// thousands of directories deep, too many entries, a list naming a file too big for the format
// and text inputs that never end: each one line naming the entry and the limit (and the
// variable that raises it), exit 1, quickly, and nothing left in TMPDIR.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { readCpio } from "../src/cpio/reader.js";
import { Spool } from "../src/tree/spool.js";
import { Tree } from "../src/tree/tree.js";
import { Budget, checkRoom, limitsFromEnv } from "../src/util/budget.js";
import { EnvironmentError } from "../src/util/errors.js";
import { runCliWithin } from "./support/cli.js";
import { octalField, paxMember, type RawMember, rawTar } from "./support/raw-tar.js";

let work: string;
/** The TMPDIR of every run: slimroot must leave nothing in it (tsx's cache stays, warm). */
let tmp: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-budget-"));
  tmp = join(work, "tmp");
  await mkdir(tmp);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const TIB = 2 ** 40;
/** A hostile case must be refused in about the time the CLI takes to start (a few seconds). */
const QUICK_MS = 20_000;

async function tarSource(name: string, members: RawMember[]): Promise<string> {
  const file = join(work, `${name}.tar`);
  await writeFile(file, rawTar(members));
  return `tar:${file}`;
}

/** Builds with TMPDIR=tmp; returns the one stderr line and what was left in TMPDIR. */
async function refused(args: string[], env: Record<string, string> = {}) {
  const out = join(await mkdtemp(join(work, "out-")), "image");
  const r = await runCliWithin(QUICK_MS, ["build", ...args, "-o", out, "--entrypoint", "/bin/true"], {
    TMPDIR: tmp,
    ...env,
  });
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /RangeError|call stack|\n\s+at /);
  // tsx keeps its compile cache in TMPDIR; slimroot must leave nothing there.
  const left = (await readdir(tmp)).filter((n) => !n.startsWith("tsx"));
  return { code: r.code, line: lines[0]!, left, out, ms: r.ms };
}

/** A PAX (GNU 1.0) sparse file declaring `size` bytes with one stored byte: a 1.5 KiB member. */
function paxSparse(name: string, size: number): RawMember[] {
  const map = Buffer.alloc(512);
  map.write("1\n0\n1\n");
  return [
    paxMember([
      ["GNU.sparse.major", "1"],
      ["GNU.sparse.minor", "0"],
      ["GNU.sparse.name", name],
      ["GNU.sparse.realsize", String(size)],
    ]),
    { name: `GNUSparseFile.0/${name}`, body: Buffer.concat([map, Buffer.from("x")]) },
  ];
}

/** An old GNU 'S' sparse member declaring `size` bytes (base-256, as GNU tar writes past 8 GiB). */
function gnuSparse(name: string, size: number): RawMember {
  return {
    name,
    type: "S",
    magic: "gnu",
    body: "x",
    edit: (b) => {
      octalField(b, 386, 12, 0);
      octalField(b, 398, 12, 1);
      b[483] = 0x80;
      b.fill(0, 484, 495);
      for (let i = 494, v = size; v > 0; i--, v = Math.floor(v / 256)) b[i] = v % 256;
    },
  };
}

test("a 1 TiB sparse bomb (PAX and GNU) is refused at its header on every format, nothing left in TMPDIR", async () => {
  const pax = await tarSource("bomb-pax", [{ name: "etc/", type: "5" }, ...paxSparse("bomb", TIB)]);
  const gnu = await tarSource("bomb-gnu", [gnuSparse("bomb", TIB)]);
  for (const [src, format, want] of [
    [pax, "ext4", /SLIMROOT_MAX_BYTES/],
    [gnu, "squashfs", /SLIMROOT_MAX_BYTES/],
    [pax, "cpio", /larger than newc cpio can hold/],
  ] as const) {
    const r = await refused([src, "--format", format]);
    assert.equal(r.code, 1, r.line);
    assert.match(r.line, /layer tar:.*: entry bomb: 1099511627776-byte file/);
    assert.match(r.line, want);
    assert.deepEqual(r.left, [], `${format}: left in TMPDIR`);
    assert.equal(existsSync(r.out), false);
  }
});

test("the expanded size is bounded in total, not only per file (cpio too)", async () => {
  const src = await tarSource("total", [
    { name: "a", body: Buffer.alloc(600_000, 1) },
    { name: "b", body: Buffer.alloc(600_000, 2) },
  ]);
  const r = await refused([src, "--format", "cpio"], { SLIMROOT_MAX_BYTES: "1000000" });
  assert.equal(r.code, 1);
  assert.equal(
    r.line,
    `slimroot: layer ${src}: entry b: 600000-byte file brings the expanded image to 1200000 bytes, over the limit of 1000000 bytes (set SLIMROOT_MAX_BYTES to raise it)`,
  );
  assert.deepEqual(r.left, []);
});

test("entries are counted while the layer is read", async () => {
  const members = Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, body: "x" }));
  const r = await refused([await tarSource("many", members)], { SLIMROOT_MAX_ENTRIES: "10" });
  assert.equal(r.code, 1);
  assert.match(
    r.line,
    /entry f10: entry number 11, over the limit of 10 \(set SLIMROOT_MAX_ENTRIES to raise it\)$/,
  );
});

/** A tar whose one file is `depth` directories down (a PAX path, since it is over 100 bytes). */
async function deepTar(depth: number): Promise<string> {
  const path = `${"d/".repeat(depth)}f`;
  return tarSource(`deep-${depth}`, [paxMember([["path", path]]), { name: "placeholder", body: "deep" }]);
}

test("a tree 3000 directories deep: refused by the depth limit in one line (cpio and ext4), no RangeError", async () => {
  const src = await deepTar(3000);
  for (const format of ["cpio", "ext4"]) {
    const r = await refused([src, "--format", format, "--minimize", "none"]);
    assert.equal(r.code, 1, r.line);
    assert.match(
      r.line,
      /entry d\/d\/d.*\(6001 characters\): 3001 directories deep, over the limit of 1024 \(set SLIMROOT_MAX_DEPTH to raise it\)$/,
    );
    assert.ok(r.line.length < 400, "the entry is shortened in the message");
    assert.deepEqual(r.left, []);
  }
});

test("with the depth limit raised, a tree 2000 deep builds as a cpio (iterative walks); 3000 deep, cpio and ext4 name their path limits", async () => {
  const out = join(await mkdtemp(join(work, "deep-")), "deep.cpio");
  const r = await runCliWithin(
    120_000,
    [
      "build",
      await deepTar(2000),
      "-o",
      out,
      "--compress",
      "none",
      "--minimize",
      "none",
      "--entrypoint",
      "/f",
    ],
    { SLIMROOT_MAX_DEPTH: "4000" },
  );
  assert.equal(r.code, 0, r.stderr);
  const names: string[] = [];
  const { createReadStream } = await import("node:fs");
  for await (const e of readCpio(createReadStream(out))) names.push(e.name);
  assert.ok(names.includes(`${"d/".repeat(2000)}f`));
  // 3000 deep is a 6001-byte path: more than Linux takes (PATH_MAX), in any format.
  const r1 = await refused([await deepTar(3000), "--minimize", "none"], { SLIMROOT_MAX_DEPTH: "4000" });
  assert.equal(r1.code, 1, r1.line);
  assert.match(r1.line, /cpio cannot hold a path of 4097 bytes \(Linux: at most 4095\)$/);
  // A disk format stages the tree as host paths: a path over PATH_MAX is its limit, said at once.
  const r2 = await refused([await deepTar(3000), "--format", "ext4", "--minimize", "none"], {
    SLIMROOT_MAX_DEPTH: "4000",
  });
  assert.equal(r2.code, 1, r2.line);
  assert.match(
    r2.line,
    /: 6001-byte path is longer than ext4 staging \(a host directory\) takes \(3840 bytes\)$/,
  );
  assert.deepEqual(r2.left, []);
});

test("Tree.walk goes 100,000 directories deep without recursion", () => {
  const tree = new Tree();
  const depth = 100_000;
  let node = tree.root;
  for (let i = 0; i < depth; i++) {
    const child = {
      inode: { kind: "dir" as const, mode: 0o755, uid: 0, gid: 0, mtime: 0 },
      children: new Map(),
      layer: 0,
    };
    node.children!.set("d", child);
    node = child;
  }
  let count = 0;
  let last = "";
  for (const e of tree.walk()) {
    count++;
    last = e.path;
  }
  assert.equal(count, depth + 1);
  assert.equal(last.length, depth * 2 - 1);
});

test("a list: naming a 5 GiB file is refused on its line before anything is written", async () => {
  const big = join(work, "big");
  await writeFile(big, "");
  await truncate(big, 5 * 2 ** 30);
  const list = join(work, "big.list");
  await writeFile(list, `dir /bin 0755 0 0\nfile /bin/big ${big} 0644 0 0\n`);
  const r = await refused([`list:${list}`, "--format", "cpio"]);
  assert.equal(r.code, 1);
  assert.equal(
    r.line,
    `slimroot: ${list}:2: 5368709120-byte file is larger than newc cpio can hold (4294967295 bytes)`,
  );
});

test("text inputs: a device is refused by type, an endless line at the line limit", async () => {
  const r1 = await refused(["list:/dev/zero"]);
  assert.equal(r1.code, 1);
  assert.equal(r1.line, "slimroot: list:/dev/zero: is a character device, not a regular file");
  const oneLine = join(work, "one-line.list");
  await writeFile(oneLine, Buffer.alloc(3 * 2 ** 20, 0x61));
  const r2 = await refused([`list:${oneLine}`]);
  assert.equal(r2.code, 1);
  assert.equal(
    r2.line,
    `slimroot: list:${oneLine}: line 1 is longer, over the limit of 1048576 bytes (1 MiB) (set SLIMROOT_MAX_LINE to raise it)`,
  );
  const r3 = await refused([`list:${oneLine}`], { SLIMROOT_MAX_READ: "100000" });
  assert.match(
    r3.line,
    /: 3145728 bytes or more, over the limit of 100000 bytes \(set SLIMROOT_MAX_READ to raise it\)$/,
  );
});

test("a profile or a kernel fragment that is /dev/zero is refused by type at once", async () => {
  const src = await tarSource("small", [{ name: "f", body: "x" }]);
  const r = await refused([src, "--minimize", "trace", "--profile", "/dev/zero"]);
  assert.equal(r.code, 1);
  assert.match(r.line, /\/dev\/zero: is a character device, not a regular file$/);
  const k = await runCliWithin(QUICK_MS, ["kernel", "build", "--config-fragment", "/dev/zero"], {
    SLIMROOT_CACHE: join(work, "no-cache"),
  });
  assert.equal(k.code, 1, k.stderr);
  assert.equal(
    k.stderr.trim(),
    "slimroot: --config-fragment /dev/zero: is a character device, not a regular file",
  );
});

test("a limit variable that is not a positive integer is one line, exit 1", async () => {
  const r = await refused([await tarSource("tiny", [{ name: "f", body: "x" }])], {
    SLIMROOT_MAX_DEPTH: "lots",
  });
  assert.equal(r.code, 1);
  assert.equal(r.line, "slimroot: SLIMROOT_MAX_DEPTH=lots: expected a positive integer");
});

test("limits: defaults, and each variable overrides its own", () => {
  const d = limitsFromEnv({});
  assert.deepEqual(d, {
    bytes: 32 * 2 ** 30,
    entries: 10_000_000,
    depth: 1024,
    read: 256 * 2 ** 20,
    line: 2 ** 20,
  });
  assert.equal(limitsFromEnv({ SLIMROOT_MAX_ENTRIES: "7" }).entries, 7);
  const b = new Budget({ ...d, depth: 3 });
  b.entry("a/b/c");
  assert.throws(() => b.entry("a/b/c/d"), /4 directories deep, over the limit of 3 \(set SLIMROOT_MAX_DEPTH/);
});

test("a dir: source is counted too: entries and bytes of host files", async () => {
  const root = join(work, "host-root");
  await mkdir(join(root, "a/b"), { recursive: true });
  await writeFile(join(root, "a/b/f"), Buffer.alloc(2000));
  const r = await refused([`dir:${root}`], { SLIMROOT_MAX_BYTES: "1000" });
  assert.equal(r.code, 1);
  assert.match(
    r.line,
    /a\/b\/f: 2000-byte file brings the expanded image to 2000 bytes, over the limit of 1000 bytes/,
  );
});

test("free space is checked before a large spool or staging: one line, exit 2 (the machine's limit)", async () => {
  assert.throws(
    () => checkRoom(tmp, 2 ** 60),
    (err: Error) =>
      err instanceof EnvironmentError &&
      new RegExp(
        `^\\d+ bytes to write in ${tmp}, but its filesystem has \\d+ bytes free \\(set TMPDIR to a larger one\\)$`,
      ).test(err.message),
  );
  const spool = await Spool.create(tmp);
  try {
    spool.reserve(1000);
    assert.throws(() => spool.reserve(2 ** 60), EnvironmentError);
  } finally {
    await spool.dispose();
  }
});
