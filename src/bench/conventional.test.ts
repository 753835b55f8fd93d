import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { link, mkdir, mkdtemp, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import { hostExecutable } from "../util/host-path.js";
import { handmadeDiskMiB, packDisk, treeSize } from "./conventional.js";

const MiB = 1 << 20;

describe("the hand-made ext4 baseline, sized to its tree", () => {
  let work = "";
  before(async () => {
    work = await mkdtemp(join(tmpdir(), "slimroot-conventional-"));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test("the size: the tree and its inodes x 1.3, plus 16 MiB, in whole MiB; never smaller for a larger tree", () => {
    // The 183 MB nginx tree that did not fit the seed's fixed 100 MB.
    assert.equal(
      handmadeDiskMiB({ bytes: 183e6, inodes: 10_000 }),
      Math.ceil(((183e6 + 2_560_000) * 1.3) / MiB) + 16,
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.integer({ min: 1, max: 1e7 }),
        fc.integer({ min: 0, max: 2 ** 30 }),
        (bytes, inodes, more) => {
          const mib = handmadeDiskMiB({ bytes, inodes });
          assert.ok(mib * MiB >= (bytes + inodes * 256) * 1.3 + 16 * MiB - 1);
          assert.ok(handmadeDiskMiB({ bytes: bytes + more, inodes }) >= mib);
        },
      ),
    );
  });

  test("the tree's size: files in 4 KiB blocks, directories a block, a hard link once, a short symlink nothing", async () => {
    const dir = join(work, "small");
    await mkdir(join(dir, "sub"), { recursive: true });
    await writeFile(join(dir, "a"), Buffer.alloc(5000));
    await writeFile(join(dir, "sub", "b"), "");
    await link(join(dir, "a"), join(dir, "sub", "a-again"));
    await symlink("a", join(dir, "short"));
    await symlink("x".repeat(80), join(dir, "long"));
    // a: 2 blocks, b: 1, sub: 1, long: 1; inodes: a, sub, b, short, long, and the root.
    assert.deepEqual(await treeSize(dir), { bytes: 5 * 4096, inodes: 6 });
  });

  test("a tree larger than the seed's fixed 100 MB fits the disk made for it", {
    skip: hostExecutable("mkfs.ext4") ? false : "mkfs.ext4 is not installed (apt-get install e2fsprogs)",
  }, async () => {
    const dir = join(work, "large");
    await mkdir(join(dir, "many"), { recursive: true });
    const chunk = randomBytes(MiB);
    await writeFile(join(dir, "big"), Buffer.concat(Array.from({ length: 110 }, () => chunk)));
    for (let i = 0; i < 500; i++) await writeFile(join(dir, "many", `f${i}`), chunk.subarray(0, 3000));
    const out = join(work, "large.ext4");
    const mib = await packDisk(dir, out);
    assert.ok(mib > 100, `${mib} MiB`);
    assert.equal((await stat(out)).size, mib * MiB);
  });
});
