// Disk writers, in-process: xattrs (security.capability) reach every format through the
// fakeroot session, and the output name picks the format.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { parseKernelConfig } from "../kernel/config.js";
import { missingOptions } from "../kernel/requirements.js";
import { writeFilesAtomically } from "../output/atomic.js";
import { bufferContent } from "../tree/spool.js";
import { type Inode, Tree } from "../tree/tree.js";
import { type DiskFormat, diskFormatForFileName } from "./formats.js";
import { withDiskFile } from "./write.js";

/** The disk format's options a kernel config (text) lacks, from the table of kernel requirements. */
const missingKernelOptions = (config: string, f: DiskFormat) =>
  missingOptions(parseKernelConfig(config), `disk:${f}`).map((m) => m.option);

// cap_net_raw=ep, as Debian's ping carries it (VFS_CAP_REVISION_2).
const CAP = Buffer.from("0100000200200000000000000000000000000000", "hex");

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-disk-unit-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

test("the output name picks the disk format", () => {
  assert.equal(diskFormatForFileName("a.ext4"), "ext4");
  assert.equal(diskFormatForFileName("a.erofs"), "erofs");
  assert.equal(diskFormatForFileName("a.sqfs"), "squashfs");
  assert.equal(diskFormatForFileName("a.squashfs"), "squashfs");
  assert.equal(diskFormatForFileName("a.cpio.gz"), undefined);
  assert.equal(diskFormatForFileName("initrd"), undefined);
});

for (const format of ["ext4", "erofs", "squashfs"] as const) {
  test(`${format}: security.capability comes through`, async (t) => {
    const tree = new Tree();
    tree.ensureDir("bin", 0);
    const ping: Inode = {
      kind: "file",
      mode: 0o755,
      uid: 0,
      gid: 0,
      mtime: 1,
      content: bufferContent(Buffer.from("ping\n")),
    };
    tree.set("bin/ping", { inode: ping, layer: 0 });
    tree.set("bin/plain", {
      inode: {
        kind: "file",
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 1,
        content: bufferContent(Buffer.from("x\n")),
      },
      layer: 0,
    });
    const image = join(work, `x.${format}`);
    const xattrs = (inode: Inode) => (inode === ping ? new Map([["security.capability", CAP]]) : undefined);
    await withDiskFile(tree, { format, output: image, epoch: 1000, xattrs }, (file) =>
      writeFilesAtomically([file]),
    );
    const dir = join(work, `mnt-${format}`);
    mkdirSync(dir, { recursive: true });
    const m = spawnSync("mount", ["-o", "loop,ro", "-t", format, image, dir], { encoding: "utf8" });
    if (m.status !== 0) return t.skip(`cannot loop-mount ${format} here: ${m.stderr.trim()}`);
    try {
      const got = execFileSync("getfattr", ["-h", "-d", "-m", "-", "-e", "hex", join(dir, "bin/ping")], {
        encoding: "utf8",
      });
      assert.match(got, new RegExp(`security\\.capability=0x${CAP.toString("hex")}`));
      const none = execFileSync("getfattr", ["-h", "-d", "-m", "-", join(dir, "bin/plain")], {
        encoding: "utf8",
      });
      assert.equal(none.trim(), "");
    } finally {
      execFileSync("umount", [dir]);
    }
  });
}

test("a kernel config without the format's options is named", () => {
  const debian = [
    "CONFIG_EXT4_FS=y",
    "CONFIG_EXT4_FS_SECURITY=y",
    "CONFIG_EROFS_FS=m",
    "CONFIG_EROFS_FS_ZIP=y",
    "CONFIG_LZ4_DECOMPRESS=y",
    "CONFIG_EROFS_FS_XATTR=y",
    "CONFIG_EROFS_FS_SECURITY=y",
    "CONFIG_SQUASHFS=m",
    "CONFIG_SQUASHFS_ZSTD=y",
    "CONFIG_SQUASHFS_XATTR=y",
  ].join("\n");
  for (const f of ["ext4", "erofs", "squashfs"] as const)
    assert.deepEqual(missingKernelOptions(debian, f), []);
  const tiny =
    "CONFIG_EXT4_FS=y\nCONFIG_SQUASHFS=y\n# CONFIG_SQUASHFS_ZSTD is not set\nCONFIG_EROFS_FS=y\nCONFIG_EROFS_FS_ZIP=m\n";
  assert.deepEqual(missingKernelOptions(tiny, "squashfs"), [
    "CONFIG_SQUASHFS_ZSTD=y",
    "CONFIG_SQUASHFS_XATTR=y",
  ]);
  assert.deepEqual(missingKernelOptions(tiny, "erofs"), [
    "CONFIG_EROFS_FS_ZIP=y",
    "CONFIG_LZ4_DECOMPRESS",
    "CONFIG_EROFS_FS_XATTR=y",
    "CONFIG_EROFS_FS_SECURITY=y",
  ]);
  // A kernel that mounts the disk but drops its file capabilities (slimroot's before 9).
  assert.deepEqual(missingKernelOptions("CONFIG_EXT4_FS=y\n", "ext4"), ["CONFIG_EXT4_FS_SECURITY=y"]);
});
