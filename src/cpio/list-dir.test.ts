import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { bufferContent } from "../tree/spool.js";
import { type Inode, Tree } from "../tree/tree.js";
import { parseList } from "./gen-list.js";
import { LIST_NAME, writeListDir } from "./list-dir.js";

let work = "";
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-listdir-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function sample(body: string): Tree {
  const tree = new Tree();
  tree.ensureDir("bin", 0);
  tree.ensureDir("etc", 0);
  const file: Inode = {
    kind: "file",
    mode: 0o4755,
    uid: 0,
    gid: 0,
    mtime: 2000,
    content: bufferContent(Buffer.from(body)),
  };
  tree.set("bin/app", { inode: file, layer: 0 });
  tree.set("etc/app-link", { inode: file, layer: 0 });
  tree.set("bin/sh", {
    inode: { kind: "symlink", mode: 0o777, uid: 0, gid: 0, mtime: 0, target: "app" },
    layer: 0,
  });
  tree.set("etc/tty", {
    inode: { kind: "char", mode: 0o620, uid: 0, gid: 5, mtime: 0, rdevMajor: 4, rdevMinor: 1 },
    layer: 0,
  });
  return tree;
}

test("a tree becomes a list plus its bodies; a hard link is one line at its last name", async () => {
  const out = join(work, "one");
  await writeListDir(sample("v1"), out, out, { clampMtime: 1000 });
  const text = await readFile(join(out, LIST_NAME), "utf8");
  const entries = parseList(text, LIST_NAME, {}).map((e) => e.entry);
  // Bodies are numbered: a location never holds a name (gen_init_cpio expands ${VAR} there).
  const body = join(out, "root", "1");
  assert.deepEqual(entries, [
    { type: "dir", name: "/bin", mode: 0o755, uid: 0, gid: 0 },
    { type: "slink", name: "/bin/sh", target: "app", mode: 0o777, uid: 0, gid: 0 },
    { type: "dir", name: "/etc", mode: 0o755, uid: 0, gid: 0 },
    { type: "file", names: ["/bin/app", "/etc/app-link"], location: body, mode: 0o4755, uid: 0, gid: 0 },
    { type: "nod", name: "/etc/tty", dev: "c", major: 4, minor: 1, mode: 0o620, uid: 0, gid: 5 },
  ]);
  assert.equal(await readFile(body, "utf8"), "v1");
  assert.equal((await stat(body)).mtimeMs, 1000_000, "the body carries the clamped mtime");
});

test("an output path gen_init_cpio would split or expand is refused before anything is written", async () => {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: gen_init_cpio's own ${VAR}
  for (const name of ["with space", "dollar-${HOME}"]) {
    const out = join(work, name);
    await assert.rejects(
      writeListDir(sample("v"), out, out, { clampMtime: 0 }),
      /cannot name files under a path with whitespace or \$\{/,
    );
    assert.equal(existsSync(out), false, name);
  }
});

test("a source reference with a newline stays inside the header comment", async () => {
  const out = join(work, "header");
  await writeListDir(sample("v"), out, out, {
    clampMtime: 0,
    source: "dir:x\nfile /etc/passwd /etc/shadow 0644 0 0",
  });
  const text = await readFile(join(out, LIST_NAME), "utf8");
  assert.ok(!text.includes("\nfile /etc/passwd"), text);
  assert.equal(parseList(text, LIST_NAME, {}).length, 5);
});
