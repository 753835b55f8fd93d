// Crafted layers flattened by slimroot must give exactly the tree `umoci raw unpack` gives.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { build } from "../src/pipeline/build.js";
import { type LayerEntry, tarOf, writeOciLayout } from "./support/layers.js";
import { diffSnapshots, isSlimrootFile, snapshotArchive, snapshotDir } from "./support/snapshot.js";

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-umoci-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const dir = (name: string, extra: Partial<LayerEntry> = {}): LayerEntry => ({
  name,
  type: "directory",
  ...extra,
});
const file = (name: string, body: string, extra: Partial<LayerEntry> = {}): LayerEntry => ({
  name,
  body,
  ...extra,
});

async function compareWithUmoci(name: string, layers: LayerEntry[][]) {
  const layout = join(work, name);
  await writeOciLayout(layout, { layers: await Promise.all(layers.map(tarOf)), gzip: true });
  const unpacked = join(work, `${name}-rootfs`);
  execFileSync("umoci", ["raw", "unpack", "--image", `${layout}:latest`, unpacked], { stdio: "pipe" });
  const out = join(work, `${name}.cpio`);
  await build({
    source: `oci:${layout}:latest`,
    output: out,
    compression: "none",
    minimize: "none",
    overrides: { entrypoint: "/bin/true" },
    additions: [],
    epoch: 0,
  });
  const diff = diffSnapshots(await snapshotDir(unpacked), await snapshotArchive(out), isSlimrootFile);
  assert.deepEqual(diff, []);
}

test("whiteouts remove files and whole directories of lower layers", async () => {
  await compareWithUmoci("whiteout", [
    [
      dir("a"),
      file("a/x", "x"),
      file("a/y", "y"),
      dir("gone"),
      file("gone/inner", "i"),
      file("b", "b"),
      dir("etc"),
    ],
    [file("a/.wh.x", ""), file(".wh.b", ""), file(".wh.gone", "")],
  ]);
});

test("an opaque directory hides lower layers but keeps its own layer's entries", async () => {
  await compareWithUmoci("opaque", [
    [dir("d"), file("d/old", "o"), dir("d/sub"), file("d/sub/f", "f"), dir("e"), file("e/old", "o")],
    [
      dir("d"),
      file("d/.wh..wh..opq", ""),
      file("d/new", "n"),
      file("e/new", "n"),
      file("e/.wh..wh..opq", ""),
    ],
  ]);
});

test("directory replaced by a file and the reverse", async () => {
  await compareWithUmoci("replace", [
    [dir("p"), file("p/q", "q"), file("f", "f"), dir("keep"), file("keep/one", "1")],
    [
      file("p", "now a file"),
      dir("f"),
      file("f/g", "g"),
      dir("keep", { mode: 0o700 }),
      file("keep/two", "2"),
    ],
  ]);
});

test("hard links, symlinks, special modes, owners and device nodes", async () => {
  await compareWithUmoci("kinds", [
    [
      dir("bin"),
      file("bin/tool", "#!/bin/sh\n", { mode: 0o4755 }),
      file("h1", "first", { uid: 1000, gid: 100 }),
      { name: "h2", type: "link", linkname: "h1" },
      { name: "bin/sh", type: "symlink", linkname: "tool" },
      { name: "abs", type: "symlink", linkname: "/etc/passwd" },
      dir("tmp", { mode: 0o1777 }),
      dir("shared", { mode: 0o2775, gid: 50 }),
      dir("dev"),
      { name: "dev/null", type: "character-device", devmajor: 1, devminor: 3, mode: 0o666 },
      { name: "dev/loop0", type: "block-device", devmajor: 7, devminor: 0, mode: 0o660 },
      { name: "dev/fifo", type: "fifo", mode: 0o600 },
    ],
    // Replacing h1 leaves h2 with the old inode, as on disk.
    [file("h1", "second")],
  ]);
});
