import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { tarOf } from "../../test/support/layers.js";
import { paxMember, rawTar } from "../../test/support/raw-tar.js";
import { Budget } from "../util/budget.js";
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

// The reference-model property (whiteouts, opaque dirs, hard links) is in test/fuzz-layers.test.ts.

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
    applyLayer(
      new Tree(new Budget(undefined, { maxFileSize: { bytes: 0xffffffff, format: "newc cpio" } })),
      Readable.from([tar]),
      0,
      "L0",
      spool,
    ),
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
