// Disk images (ext4, erofs, squashfs) built by an unprivileged user: each passes its own
// checker, holds exactly the tree the initramfs holds (owners, modes, devices, links,
// setuid), comes out byte-identical twice, and fails cleanly on hostile output paths.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { tarOf, writeOciLayout } from "./support/layers.js";
import { cliAsNobody, NOBODY, nobodyDir } from "./support/nobody.js";
import { diffSnapshots, type Snap, snapshotArchive, snapshotDir } from "./support/snapshot.js";

const EPOCH = "1700000000";
const FORMATS = [
  { format: "ext4", ext: "ext4" },
  { format: "erofs", ext: "erofs" },
  { format: "squashfs", ext: "sqfs" },
] as const;

let work: string;
let source: string;

const asNobody = (args: string[], env: Record<string, string> = {}) =>
  cliAsNobody(args, work, { SOURCE_DATE_EPOCH: EPOCH, ...env });

/** A directory the unprivileged user owns. */
function ownDir(name: string): string {
  return nobodyDir(join(work, name));
}

before(async () => {
  work = await mkdtemp("/tmp/slimroot-disk-");
  chmodSync(work, 0o755);
  nobodyDir(work, true);
  const big = randomBytes(3_000_000);
  const layer = await tarOf([
    { name: "bin/", type: "directory" },
    { name: "bin/true", body: "#!/bin/sh\n", mode: 0o755 },
    { name: "bin/su", body: "setuid\n", mode: 0o4755 },
    { name: "bin/sg", body: "setgid\n", mode: 0o2711, gid: 42 },
    { name: "bin/link-to-su", type: "link", linkname: "bin/su" },
    { name: "bin/sh", type: "symlink", linkname: "busybox" },
    { name: "etc/", type: "directory" },
    { name: "etc/shadow", body: "secret\n", mode: 0o640, gid: 42 },
    { name: "etc/none", body: "mode 000\n", mode: 0 },
    { name: "home/app/", type: "directory", mode: 0o700, uid: 1000, gid: 1000 },
    { name: "home/app/data", body: big, uid: 1000, gid: 1000 },
    { name: "home/app/long-symlink", type: "symlink", linkname: `/${"x".repeat(120)}` },
    { name: "scratch/", type: "directory", mode: 0o1777 },
    { name: "devices/", type: "directory" },
    { name: "devices/null", type: "character-device", devmajor: 1, devminor: 3, mode: 0o666 },
    { name: "devices/vda", type: "block-device", devmajor: 254, devminor: 0, mode: 0o660, gid: 6 },
    { name: "devices/fifo", type: "fifo", mode: 0o620, uid: 7 },
    { name: "var/lib/big-uid", body: "x", uid: 4_000_000, gid: 3_000_000 },
  ]);
  const layout = join(work, "layout");
  await writeOciLayout(layout, { layers: [layer], gzip: true });
  execFileSync("chmod", ["-R", "a+rX", layout]);
  source = `oci:${layout}:latest`;
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Entries a disk root has that the initramfs has not: mount points, ext4's lost+found. */
const diskOnly = (p: string) => ["dev", "proc", "sys", "tmp", "run", "lost+found"].includes(p);

/** `unsquashfs -lln`, as snapshots (without content hashes). */
function squashfsListing(image: string): Map<string, Snap> {
  const out = new Map<string, Snap>();
  const text = execFileSync("unsquashfs", ["-lln", image], { encoding: "utf8", maxBuffer: 1 << 26 });
  const types: Record<string, string> = {
    "-": "file",
    d: "dir",
    l: "symlink",
    c: "char",
    b: "block",
    p: "fifo",
    s: "socket",
  };
  for (const line of text.split("\n")) {
    const m = /^(\S)(\S{9}) (\d+)\/(\d+)\s+(\d+(?:,\s*\d+)?)\s+\S+ \S+ squashfs-root\/?(.*)$/.exec(line);
    if (!m || m[6] === "") continue;
    const [name, target] = m[6]!.split(" -> ");
    const type = types[m[1]!]!;
    const snap: Snap = {
      type,
      mode: permBits(m[2]!).toString(8),
      owner: `${m[3]}:${m[4]}`,
    };
    if (type === "symlink") snap.target = target;
    if (type === "char" || type === "block") snap.rdev = m[5]!.replace(/\s/g, "");
    out.set(name!, snap);
  }
  return out;
}

/** rwsr-x--T -> 04750 etc. */
function permBits(s: string): number {
  let mode = 0;
  const bit = (i: number, v: number) => (s[i] !== "-" && s[i] !== "S" && s[i] !== "T" ? v : 0);
  for (let k = 0; k < 3; k++)
    mode |= (bit(k * 3, 4) | bit(k * 3 + 1, 2) | bit(k * 3 + 2, 1)) << ((2 - k) * 3);
  if (/[sS]/.test(s[2]!)) mode |= 0o4000;
  if (/[sS]/.test(s[5]!)) mode |= 0o2000;
  if (/[tT]/.test(s[8]!)) mode |= 0o1000;
  return mode;
}

/** Mounts `image` read-only through a loop device (the test runs as root; the build did not). */
function withMount<T>(image: string, type: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = join(work, `mnt-${type}`);
  mkdirSync(dir, { recursive: true });
  execFileSync("mount", ["-o", "loop,ro", "-t", type, image, dir]);
  return fn(dir).finally(() => execFileSync("umount", [dir]));
}

describe("disk images built as an unprivileged user", () => {
  let want: Map<string, Snap>;
  before(() => {
    const out = ownDir("ref");
    const r = asNobody(["build", source, "-o", join(out, "ref.cpio"), "--entrypoint", "/bin/true"]);
    assert.equal(r.code, 0, r.stderr);
  });

  for (const { format, ext } of FORMATS) {
    test(`${format}: checker clean, same entries as the initramfs, reproducible`, async () => {
      want ??= await snapshotArchive(join(work, "ref", "ref.cpio"));
      const out = ownDir(`out-${format}`);
      const image = join(out, `a.${ext}`);
      const r = asNobody(["build", source, "-o", image, "--entrypoint", "/bin/true"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`\\(${format}\\)`));
      assert.ok(existsSync(`${image}.why`), "the .why file is written too");

      if (format === "ext4") execFileSync("e2fsck", ["-fn", image], { stdio: "pipe" });
      if (format === "erofs") execFileSync("fsck.erofs", [image], { stdio: "pipe" });
      if (format === "squashfs") {
        const listed = squashfsListing(image);
        // unsquashfs -lln shows no bytes or inode numbers: the mount below compares those.
        const sized = new Map(
          [...want].map(([p, { sha256: _h, linkOf: _l, ...rest }]) => [p, rest as Snap] as const),
        );
        assert.deepEqual(diffSnapshots(sized, listed, diskOnly), []);
      }
      const got = await withMount(image, format, (dir) => snapshotDir(dir));
      assert.deepEqual(diffSnapshots(want, got, diskOnly), []);

      const again = join(out, `b.${ext}`);
      assert.equal(asNobody(["build", source, "-o", again, "--entrypoint", "/bin/true"]).code, 0);
      assert.ok((await readFile(image)).equals(await readFile(again)), "two builds, identical bytes");
      // The default epoch, 0, too (e2fsprogs reads a fake time of 0 as none).
      const zero = [join(out, `c.${ext}`), join(out, `d.${ext}`)];
      for (const z of zero)
        assert.equal(
          asNobody(["build", source, "-o", z, "--entrypoint", "/bin/true"], { SOURCE_DATE_EPOCH: "0" }).code,
          0,
        );
      assert.ok((await readFile(zero[0]!)).equals(await readFile(zero[1]!)), "identical bytes with epoch 0");
    });
  }
});

describe("hostile output for disk images: one line, exit 1, old output intact, no temp file", () => {
  const PREVIOUS = "previous output, must survive\n";

  async function refused(dir: string, name: string, extra: string[], pattern: RegExp) {
    const out = join(dir, name);
    await writeFile(out, PREVIOUS);
    const before = (await readdir(dir)).sort();
    const r = asNobody(["build", source, "-o", out, "--entrypoint", "/bin/true", ...extra]);
    assert.equal(r.code, 1, `exit code (stderr: ${r.stderr})`);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, `one line: ${r.stderr}`);
    assert.match(lines[0]!, pattern);
    assert.equal(await readFile(out, "utf8"), PREVIOUS);
    assert.deepEqual((await readdir(dir)).sort(), before, "no temp file left behind");
    const tmp = await readdir(join(work, "tmp"));
    assert.deepEqual(
      tmp.filter((n) => n.startsWith("slimroot-")),
      [],
      "no staging left in TMPDIR",
    );
  }

  for (const { format, ext } of FORMATS) {
    test(`${format}: an output directory the user cannot write`, async () => {
      const dir = join(work, `ro-${format}`);
      mkdirSync(dir, { recursive: true }); // root's, 0755
      await refused(dir, `x.${ext}`, [], /cannot write (here|in \S+) \(EACCES\)/);
    });

    test(`${format}: a full disk`, async (t) => {
      const dir = ownDir(`full-${format}`);
      const m = spawnSync("mount", [
        "-t",
        "tmpfs",
        "-o",
        `size=256k,uid=${NOBODY},gid=${NOBODY}`,
        "tmpfs",
        dir,
      ]);
      if (m.status !== 0) return t.skip(`cannot mount a tmpfs here: ${m.stderr}`);
      try {
        await refused(dir, `x.${ext}`, [], /no space left on the output's filesystem/);
      } finally {
        execFileSync("umount", [dir]);
      }
    });
  }

  test("ext4: --size too small", async () => {
    const dir = ownDir("small");
    await refused(
      dir,
      "x.ext4",
      ["--size", "2M"],
      /does not fit in 2 MiB \(--size\); it needs about \d+ MiB/,
    );
  });

  test("--size is for ext4 only", async () => {
    const dir = ownDir("size-erofs");
    await refused(dir, "x.erofs", ["--size", "64M"], /--size: only for ext4/);
  });
});
