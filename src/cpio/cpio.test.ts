import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { test } from "node:test";
import fc from "fast-check";
import { bufferContent } from "../tree/spool.js";
import { type Inode, Tree } from "../tree/tree.js";
import { FileChunks, openInput } from "../util/input-file.js";
import { FootprintCounter } from "./footprint.js";
import { S_IFREG } from "./newc.js";
import { type CpioEntry, readCpio } from "./reader.js";
import { directoryChain, writeCpio, writeRecords } from "./writer.js";

const segment = fc.stringMatching(/^[a-zA-Z0-9._-]{1,12}$/).filter((s) => s !== "." && s !== "..");

interface Spec {
  path: string[];
  kind: "file" | "dir" | "symlink" | "char" | "fifo";
  mode: number;
  uid: number;
  mtime: number;
  body: Uint8Array;
}

const entry = fc.record({
  path: fc.array(segment, { minLength: 1, maxLength: 4 }),
  kind: fc.constantFrom("file", "dir", "symlink", "char", "fifo"),
  mode: fc.integer({ min: 0, max: 0o7777 }),
  uid: fc.integer({ min: 0, max: 70000 }),
  mtime: fc.integer({ min: 0, max: 2 ** 31 }),
  body: fc.uint8Array({ maxLength: 300 }),
}) as fc.Arbitrary<Spec>;

function treeOf(specs: Spec[]): Tree {
  const tree = new Tree();
  for (const s of specs) {
    const path = s.path.join("/");
    const parent = s.path.slice(0, -1).join("/");
    const { node } = tree.ensureDir(parent, 0);
    if (!node) continue;
    const inode: Inode = { kind: s.kind, mode: s.mode, uid: s.uid, gid: s.uid % 7, mtime: s.mtime };
    if (s.kind === "file") inode.content = bufferContent(Buffer.from(s.body));
    if (s.kind === "symlink") inode.target = Buffer.from(s.body).toString("hex") || "x";
    if (s.kind === "char") Object.assign(inode, { rdevMajor: s.uid % 256, rdevMinor: s.mtime % 256 });
    tree.set(path, { inode, layer: 0, ...(s.kind === "dir" ? { children: new Map() } : {}) });
  }
  return tree;
}

test("cpio write then read gives back every entry, parents first, and is deterministic", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(entry, { maxLength: 25 }),
      fc.integer({ min: 0, max: 2 ** 31 }),
      async (specs, clamp) => {
        const tree = treeOf(specs);
        const bytes = await buffer(writeCpio(tree, { clampMtime: clamp }));
        assert.equal(bytes.length % 4, 0);
        assert.deepEqual(await buffer(writeCpio(treeOf(specs), { clampMtime: clamp })), bytes);
        const seen = new Set<string>();
        const want = [...tree.walk()];
        let i = 0;
        for await (const e of readCpio([bytes])) {
          const w = want[i++]!;
          assert.equal(e.name, w.path === "" ? "." : w.path);
          const parent = e.name.includes("/") ? e.name.slice(0, e.name.lastIndexOf("/")) : ".";
          if (e.name !== ".") assert.ok(seen.has(parent), `parent of ${e.name} comes first`);
          seen.add(e.name);
          assert.equal(e.uid, w.inode.uid);
          assert.equal(e.mtime, Math.min(w.inode.mtime, clamp));
          if (w.inode.kind === "file") assert.deepEqual(e.body, await buffer(w.inode.content!.open()));
          if (w.inode.kind === "symlink") assert.equal(e.body.toString(), w.inode.target);
          if (w.inode.kind !== "symlink") assert.equal(e.mode & 0o7777, w.inode.mode);
        }
        assert.equal(i, want.length);
      },
    ),
    { numRuns: 200 },
  );
});

test("the footprint the writer counts is the one a reader counts from the archive", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(entry, { maxLength: 25 }), async (specs) => {
      const written = new FootprintCounter();
      const bytes = await buffer(
        writeCpio(treeOf(specs), { clampMtime: 0, onHeader: (h) => written.add(h) }),
      );
      const read = new FootprintCounter();
      for await (const e of readCpio([bytes], { body: () => false })) read.add(e);
      assert.deepEqual(written.result(), read.result());
    }),
    { numRuns: 100 },
  );
});

test("GNU cpio reads our archives, hard links included", async () => {
  const dir = await mkdtemp(join(tmpdir(), "slimroot-cpio-"));
  try {
    const tree = new Tree();
    const shared: Inode = {
      kind: "file",
      mode: 0o640,
      uid: 0,
      gid: 0,
      mtime: 5,
      content: bufferContent(Buffer.from("shared body")),
    };
    tree.ensureDir("a/b", 0);
    tree.set("a/b/one", { inode: shared, layer: 0 });
    tree.set("a/two", { inode: shared, layer: 0 });
    tree.set("a/link", {
      inode: { kind: "symlink", mode: 0o777, uid: 0, gid: 0, mtime: 0, target: "b/one" },
      layer: 0,
    });
    const archive = join(dir, "x.cpio");
    await writeFile(archive, await buffer(writeCpio(tree, { clampMtime: 100 })));
    const out = join(dir, "out");
    execFileSync("sh", ["-c", `mkdir ${out} && cd ${out} && cpio -idm --quiet < ${archive}`]);
    const ls = execFileSync("sh", [
      "-c",
      `cd ${out} && stat -c '%n %h %s' a/b/one a/two && readlink a/link && cat a/two`,
    ]).toString();
    assert.equal(ls, "a/b/one 2 11\na/two 2 11\nb/one\nshared body");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a truncated archive is reported", async () => {
  const tree = new Tree();
  tree.set("f", {
    inode: { kind: "file", mode: 0o644, uid: 0, gid: 0, mtime: 0, content: bufferContent(Buffer.alloc(100)) },
    layer: 0,
  });
  const bytes = await buffer(writeCpio(tree, { clampMtime: 0 }));
  await assert.rejects(async () => {
    for await (const _ of readCpio([bytes.subarray(0, 200)]));
  }, /truncated cpio archive/);
});

test("headers only: bodies passed over (seeking in a file range) leave every header as a full read gives it; a cut is still reported", async () => {
  const dir = await mkdtemp(join(tmpdir(), "slimroot-cpio-"));
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(entry, { maxLength: 25 }), fc.nat(300), async (specs, skew) => {
        const bytes = await buffer(writeCpio(treeOf(specs), { clampMtime: 0 }));
        // The archive sits inside a larger file, as a kernel's built-in one does.
        const file = join(dir, "x");
        await writeFile(file, Buffer.concat([Buffer.alloc(skew, 7), bytes, Buffer.alloc(64, 9)]));
        const full: CpioEntry[] = [];
        for await (const e of readCpio([bytes])) full.push(e);
        const { fh } = await openInput(file);
        try {
          const keep = (name: string) => name.endsWith("0");
          const range = new FileChunks(fh, skew + bytes.length, skew);
          let i = 0;
          for await (const e of readCpio(range, { body: keep })) {
            const { body, ...header } = full[i++]!;
            assert.deepEqual({ ...e, body: undefined }, { ...header, body: undefined });
            assert.equal(e.fileSize, body.length);
            assert.deepEqual(e.body, keep(e.name) ? body : Buffer.alloc(0));
          }
          assert.equal(i, full.length);
          const cut = new FileChunks(fh, skew + bytes.length - 4, skew);
          await assert.rejects(async () => {
            for await (const _ of readCpio(cut, { body: () => false }));
          }, /truncated cpio archive/);
        } finally {
          await fh.close();
        }
      }),
      { numRuns: 50 },
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("records written directly give the bytes of the same tree written whole", async () => {
  const tree = new Tree();
  tree.ensureDir("etc/slimroot", 0);
  const body = Buffer.from("version 1\n");
  tree.set("etc/slimroot/x.conf", {
    inode: { kind: "file", mode: 0o644, uid: 0, gid: 0, mtime: 0, content: bufferContent(body) },
    layer: 0,
  });
  const direct = writeRecords([
    ...directoryChain("etc/slimroot"),
    { name: "etc/slimroot/x.conf", mode: S_IFREG | 0o644, uid: 0, gid: 0, mtime: 0, body },
  ]);
  assert.deepEqual(await buffer(direct), await buffer(writeCpio(tree, { clampMtime: 0 })));
});
