import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { hostFs, type ImageFs, resolvePath, treeFs } from "./image-fs.js";
import { bufferContent } from "./spool.js";
import { dirInode, Tree } from "./tree.js";

type Spec = Record<string, string | { link: string } | "dir">;

/** The same layout as a Tree and as a host directory, to check both ImageFs agree. */
const layout: Spec = {
  "usr/lib/x86_64-linux-gnu": "dir",
  "usr/lib/x86_64-linux-gnu/libx.so.1.2.3": "ELF-ish body",
  "usr/lib/x86_64-linux-gnu/libx.so.1": { link: "libx.so.1.2.3" },
  "usr/bin/tool": "#!/bin/sh\n",
  lib: { link: "usr/lib" },
  lib64: { link: "/usr/lib/x86_64-linux-gnu" },
  "etc/abs": { link: "/usr/lib/x86_64-linux-gnu/libx.so.1" },
  "etc/up": { link: "../../../../usr/bin/tool" },
  "etc/loop1": { link: "loop2" },
  "etc/loop2": { link: "loop1" },
  "etc/dangling": { link: "/usr/nothing" },
  "etc/empty": "",
  "etc/viadir": { link: "../lib/x86_64-linux-gnu/.." },
  hostusr: { link: "/usr" },
};

function buildTree(spec: Spec): Tree {
  const tree = new Tree();
  for (const [path, what] of Object.entries(spec)) {
    const parent = path.split("/").slice(0, -1).join("/");
    tree.ensureDir(parent, 0);
    if (what === "dir") tree.ensureDir(path, 0);
    else if (typeof what === "string")
      tree.set(path, {
        inode: {
          kind: "file",
          mode: 0o755,
          uid: 0,
          gid: 0,
          mtime: 0,
          content: bufferContent(Buffer.from(what)),
        },
        layer: 0,
      });
    else
      tree.set(path, {
        inode: { kind: "symlink", mode: 0o777, uid: 0, gid: 0, mtime: 0, target: what.link },
        layer: 0,
      });
  }
  tree.set("", { inode: dirInode(), layer: 0 });
  return tree;
}

const hostRoot = mkdtempSync(join(tmpdir(), "slimroot-imagefs-"));
after(() => rmSync(hostRoot, { recursive: true, force: true }));
for (const [path, what] of Object.entries(layout)) {
  const full = join(hostRoot, path);
  mkdirSync(join(full, ".."), { recursive: true });
  if (what === "dir") mkdirSync(full, { recursive: true });
  else if (typeof what === "string") writeFileSync(full, what, { mode: 0o755 });
  else symlinkSync(what.link, full);
}

const impls: [string, ImageFs][] = [
  ["treeFs", treeFs(buildTree(layout))],
  ["hostFs", hostFs(hostRoot)],
];

for (const [name, fs] of impls) {
  test(`${name}: lstat, readlink, readFile, readdir`, async () => {
    assert.deepEqual(fs.lstat("/usr/bin/tool"), { kind: "file", mode: 0o755, size: 10 });
    assert.equal(fs.lstat("/lib")?.kind, "symlink");
    assert.equal(fs.lstat("/usr/lib")?.kind, "dir");
    assert.equal(fs.lstat("/missing"), undefined);
    // Nothing follows links: a path through /lib is not there for lstat, nor one through a
    // link that leaves the root (/hostusr -> /usr, which the host has).
    assert.equal(fs.lstat("/lib/x86_64-linux-gnu"), undefined);
    assert.equal(fs.lstat("/hostusr/bin"), undefined);
    assert.equal(fs.readlink("/lib/x86_64-linux-gnu/libx.so.1"), undefined);
    assert.equal(await fs.readFile("/lib/x86_64-linux-gnu/libx.so.1.2.3"), undefined);
    assert.equal(fs.readdir("/lib"), undefined);
    assert.equal(fs.readdir("/hostusr/bin"), undefined);
    assert.equal(fs.readlink("/lib64"), "/usr/lib/x86_64-linux-gnu");
    assert.equal(fs.readlink("/usr/bin/tool"), undefined);
    assert.equal((await fs.readFile("/usr/bin/tool"))?.toString(), "#!/bin/sh\n");
    assert.equal((await fs.readFile("/usr/bin/tool", 3))?.toString(), "#!/");
    assert.equal((await fs.readFile("/etc/empty"))?.length, 0);
    assert.equal(await fs.readFile("/usr/lib"), undefined);
    assert.equal(await fs.readFile("/missing"), undefined);
    assert.deepEqual(fs.readdir("/usr/lib/x86_64-linux-gnu"), ["libx.so.1", "libx.so.1.2.3"]);
    // ".." never climbs out of the root, even when a caller passes it unresolved.
    assert.deepEqual(fs.readdir("/../../.."), fs.readdir("/"));
    assert.equal(fs.lstat("/../../../usr/bin/tool")?.kind, "file");
    assert.equal(fs.readdir("/usr/bin/tool"), undefined);
  });

  test(`${name}: resolvePath stays inside the image root`, () => {
    assert.deepEqual(resolvePath(fs, "/lib/x86_64-linux-gnu/libx.so.1"), {
      path: "/usr/lib/x86_64-linux-gnu/libx.so.1.2.3",
      links: ["/lib", "/usr/lib/x86_64-linux-gnu/libx.so.1"],
    });
    assert.deepEqual(resolvePath(fs, "/lib/x86_64-linux-gnu/libx.so.1", { followLast: false }), {
      path: "/usr/lib/x86_64-linux-gnu/libx.so.1",
      links: ["/lib"],
    });
    // Absolute targets restart at the image root, not the host's.
    assert.deepEqual(resolvePath(fs, "/etc/abs"), {
      path: "/usr/lib/x86_64-linux-gnu/libx.so.1.2.3",
      links: ["/etc/abs", "/usr/lib/x86_64-linux-gnu/libx.so.1"],
    });
    assert.deepEqual(resolvePath(fs, "/lib64/libx.so.1"), {
      path: "/usr/lib/x86_64-linux-gnu/libx.so.1.2.3",
      links: ["/lib64", "/usr/lib/x86_64-linux-gnu/libx.so.1"],
    });
    // ".." clamps at the root.
    assert.deepEqual(resolvePath(fs, "/etc/up"), { path: "/usr/bin/tool", links: ["/etc/up"] });
    assert.deepEqual(resolvePath(fs, "/../../usr/./bin//tool"), { path: "/usr/bin/tool", links: [] });
    // ".." is physical: it leaves the directory a link led to.
    assert.deepEqual(resolvePath(fs, "/etc/viadir"), { path: "/usr/lib", links: ["/etc/viadir", "/lib"] });
    assert.deepEqual(resolvePath(fs, "/lib/../bin/tool"), { path: "/usr/bin/tool", links: ["/lib"] });
    // A missing last name still resolves (lstat says it is absent); a missing directory does not.
    assert.deepEqual(resolvePath(fs, "/lib/nothing"), { path: "/usr/lib/nothing", links: ["/lib"] });
    assert.deepEqual(resolvePath(fs, "/etc/dangling"), { path: "/usr/nothing", links: ["/etc/dangling"] });
    assert.equal(resolvePath(fs, "/nowhere/file"), undefined);
    assert.equal(resolvePath(fs, "/usr/bin/tool/x"), undefined);
    assert.equal(resolvePath(fs, "/etc/loop1"), undefined);
    assert.deepEqual(resolvePath(fs, "/etc/loop1", { followLast: false }), { path: "/etc/loop1", links: [] });
    assert.deepEqual(resolvePath(fs, "/"), { path: "/", links: [] });
  });
}

test("resolvePath gives up after 40 links, as Linux does", () => {
  const chain = (n: number) => {
    const spec: Spec = { "f/target": "x" };
    for (let i = 0; i < n; i++) spec[`f/l${i}`] = { link: i === n - 1 ? "target" : `l${i + 1}` };
    return treeFs(buildTree(spec));
  };
  assert.deepEqual(resolvePath(chain(40), "/f/l0")?.path, "/f/target");
  assert.equal(resolvePath(chain(41), "/f/l0"), undefined);
});
