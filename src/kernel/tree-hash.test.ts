import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { treeHash } from "./tree-hash.js";

test("a patched --source tree gets a new key, even with the same size, mtime and version", async () => {
  const root = await mkdtemp(join(tmpdir(), "tree-hash-test-"));
  const saved = process.env.SLIMROOT_CACHE;
  process.env.SLIMROOT_CACHE = join(root, "cache");
  try {
    const tree = join(root, "linux");
    await mkdir(join(tree, "kernel"), { recursive: true });
    await writeFile(join(tree, "Makefile"), "VERSION = 6\n");
    await writeFile(join(tree, "kernel", "fork.c"), "int a = 1;\n");
    await symlink("fork.c", join(tree, "kernel", "link.c"));
    const first = await treeHash(tree);
    assert.equal(await treeHash(tree), first, "the same tree, the same hash (from the index)");

    // The old key was the path and `make kernelversion`: both unchanged by this patch.
    const file = join(tree, "kernel", "fork.c");
    const before = await stat(file);
    await writeFile(file, "int a = 2;\n");
    await utimes(file, before.atime, before.mtime);
    const patched = await treeHash(tree);
    assert.notEqual(patched, first);

    await chmod(join(tree, "Makefile"), 0o755);
    const exec = await treeHash(tree);
    assert.notEqual(exec, patched, "the executable bit counts");
    await writeFile(join(tree, "kernel", "new.c"), "");
    assert.notEqual(await treeHash(tree), exec, "a new file counts");
    // .git is history, not the tree's content.
    const withNew = await treeHash(tree);
    await mkdir(join(tree, ".git"));
    await writeFile(join(tree, ".git", "HEAD"), "ref\n");
    assert.equal(await treeHash(tree), withNew);
  } finally {
    if (saved === undefined) delete process.env.SLIMROOT_CACHE;
    else process.env.SLIMROOT_CACHE = saved;
    await rm(root, { recursive: true, force: true });
  }
});
