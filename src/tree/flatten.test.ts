import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { after, before, test } from "node:test";
import fc from "fast-check";
import { tarOf } from "../../test/support/layers.js";
import { paxMember, rawTar } from "../../test/support/raw-tar.js";
import { applyLayer } from "./flatten.js";
import { Spool } from "./spool.js";
import { Tree } from "./tree.js";

let spool: Spool;
before(async () => {
  spool = await Spool.create();
});
after(async () => {
  await spool.dispose();
});

type Op =
  | { kind: "file"; path: string; body: string }
  | { kind: "dir"; path: string }
  | { kind: "wh"; path: string }
  | { kind: "opq"; path: string };

/**
 * The reference semantics, written as plainly as possible over a map of paths: what a
 * runtime does when it unpacks layers in order.
 */
function model(layers: Op[][]): Map<string, string> | "error" {
  const tree = new Map<string, { kind: "file" | "dir"; body?: string; layer: number }>();
  const under = (p: string) => [...tree.keys()].filter((k) => k.startsWith(`${p}/`));
  for (const [layer, ops] of layers.entries()) {
    for (const op of ops) {
      const parts = op.path.split("/");
      // Parents: create missing ones, refuse to go through a file.
      for (let i = 1; i < parts.length; i++) {
        const parent = parts.slice(0, i).join("/");
        const have = tree.get(parent);
        if (have && have.kind !== "dir") return "error";
        if (!have) tree.set(parent, { kind: "dir", layer });
      }
      if (op.kind === "wh") {
        tree.delete(op.path);
        for (const k of under(op.path)) tree.delete(k);
      } else if (op.kind === "opq") {
        const parent = parts.slice(0, -1).join("/");
        for (const k of under(parent)) {
          if (k.slice(parent.length + 1).includes("/")) continue;
          if (tree.get(k)!.layer < layer) {
            tree.delete(k);
            for (const d of under(k)) tree.delete(d);
          }
        }
      } else if (op.kind === "dir") {
        const have = tree.get(op.path);
        if (have?.kind === "dir") have.layer = layer;
        else {
          for (const k of under(op.path)) tree.delete(k);
          tree.set(op.path, { kind: "dir", layer });
        }
      } else {
        for (const k of under(op.path)) tree.delete(k);
        tree.set(op.path, { kind: "file", body: op.body, layer });
      }
    }
  }
  return new Map([...tree].map(([k, v]) => [k, v.kind === "dir" ? "<dir>" : v.body!]));
}

function toEntries(ops: Op[]) {
  return ops.map((op) => {
    const slash = op.path.lastIndexOf("/");
    const dir = slash < 0 ? "" : `${op.path.slice(0, slash + 1)}`;
    const base = op.path.slice(slash + 1);
    if (op.kind === "wh") return { name: `${dir}.wh.${base}`, body: "" };
    if (op.kind === "opq") return { name: `${dir}.wh..wh..opq`, body: "" };
    if (op.kind === "dir") return { name: op.path, type: "directory" as const };
    return { name: op.path, body: op.body };
  });
}

async function flatten(layers: Op[][]): Promise<Map<string, string> | "error"> {
  const tree = new Tree();
  try {
    for (const [i, ops] of layers.entries()) {
      await applyLayer(tree, Readable.from([await tarOf(toEntries(ops))]), i, `L${i}`, spool);
    }
  } catch {
    return "error";
  }
  const out = new Map<string, string>();
  for (const { path, inode } of tree.walk()) {
    if (path === "") continue;
    out.set(path, inode.kind === "dir" ? "<dir>" : await text(inode.content!.open()));
  }
  return out;
}

const path = fc.array(fc.constantFrom("a", "b", "c"), { minLength: 1, maxLength: 3 }).map((p) => p.join("/"));
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("file" as const), path, body: fc.constantFrom("1", "2", "3") }),
  fc.record({ kind: fc.constant("dir" as const), path }),
  fc.record({ kind: fc.constant("wh" as const), path }),
  fc.record({ kind: fc.constant("opq" as const), path: path.map((p) => `${p}/x`) }),
);

test("flattening agrees with the reference semantics on random layer stacks", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.array(op, { maxLength: 6 }), { minLength: 1, maxLength: 4 }),
      async (layers) => {
        const want = model(layers);
        const got = await flatten(layers);
        if (want === "error" || got === "error") assert.equal(got, want);
        else assert.deepEqual(Object.fromEntries([...got].sort()), Object.fromEntries([...want].sort()));
      },
    ),
    { numRuns: 300 },
  );
});

test("garbage instead of a tar stream is a one-line error naming the layer", async () => {
  const tree = new Tree();
  await assert.rejects(
    applyLayer(tree, Readable.from([Buffer.alloc(1024, 0x41)]), 0, "sha256:bad", spool),
    /^Error: layer sha256:bad: /,
  );
});

test("malformed whiteouts are refused; .wh..name (a dotfile's whiteout) and the opaque marker are not", async () => {
  for (const bad of [".wh.", ".wh..", ".wh...", "d/.wh..", ".wh..wh.plnk", "d/.wh..wh..opq2"]) {
    const tree = new Tree();
    const tar = await tarOf([
      { name: "d/keep", body: "k" },
      { name: bad, body: "" },
    ]);
    await assert.rejects(
      applyLayer(tree, Readable.from([tar]), 0, "L0", spool),
      new RegExp(`^Error: layer L0: entry ${bad.replaceAll(".", "\\.")}: malformed whiteout`),
    );
  }
  const tree = new Tree();
  await applyLayer(tree, Readable.from([await tarOf([{ name: "d/.profile", body: "p" }])]), 0, "L0", spool);
  const top = await tarOf([{ name: "d/.wh..profile", body: "" }]);
  await applyLayer(tree, Readable.from([top]), 1, "L1", spool);
  assert.equal(tree.get("d/.profile"), undefined);
  assert.ok(tree.get("d"));
});

test("a file too big for the output format is refused at its header, before any body is read", async () => {
  // The header claims 5 GiB and no body follows: a reader that spooled first would say "truncated".
  const tar = rawTar([{ name: "huge", size: 5 * 2 ** 30 }]).subarray(0, 512);
  await assert.rejects(
    applyLayer(new Tree(), Readable.from([tar]), 0, "L0", spool, {
      maxFileSize: { bytes: 0xffffffff, format: "newc cpio" },
    }),
    /^Error: layer L0: entry huge: 5368709120-byte file is larger than newc cpio can hold \(4294967295 bytes\)$/,
  );
});

test("xattrs (security.capability included) are kept on the inode", async () => {
  const cap = Buffer.from([1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const tar = rawTar([
    paxMember([["SCHILY.xattr.security.capability", cap]]),
    { name: "bin/ping", body: "elf" },
  ]);
  const tree = new Tree();
  await applyLayer(tree, Readable.from([tar]), 0, "L0", spool);
  assert.deepEqual(tree.get("bin/ping")?.inode.xattrs?.get("security.capability"), cap);
});
