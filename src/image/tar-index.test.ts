// The docker-archive index is the layer reader walking headers (issue 17, item 15): names
// resolve and archives end the same way, and what the layer reader refuses it refuses.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { paxMember, rawTar } from "../../test/support/raw-tar.js";
import { UserError } from "../util/errors.js";
import { indexTar } from "./tar-index.js";

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-index-"));
});
after(() => rm(work, { recursive: true, force: true }));

async function index(name: string, tar: Buffer) {
  const path = join(work, name);
  await writeFile(path, tar);
  return { path, members: indexTar(path) };
}

test("a member named by both a GNU long name and a PAX path is indexed under the long name", async () => {
  const { members } = await index(
    "names.tar",
    rawTar([
      { name: "././@LongLink", type: "L", body: "manifest.json\0" },
      paxMember([["path", "decoy.json"]]),
      { name: "x", body: "[]" },
    ]),
  );
  assert.deepEqual([...(await members).keys()], ["manifest.json"]);
  const m = (await members).get("manifest.json")!;
  assert.deepEqual([m.offset, m.size], [3 * 512 + 512 + 512, 2]);
});

test("members after a lone zero block are not silently dropped: the archive is refused", async () => {
  const head = rawTar([{ name: "a", body: "1" }]).subarray(0, 1024);
  const { path, members } = await index(
    "zero.tar",
    Buffer.concat([head, Buffer.alloc(512), rawTar([{ name: "manifest.json", body: "[]" }])]),
  );
  await assert.rejects(members, (err: unknown) => {
    assert.ok(err instanceof UserError);
    assert.equal(err.message, `${path}: entry a: a single zero block at byte 1024 is followed by more data`);
    return true;
  });
});

test("what the layer reader refuses, the index refuses, naming the entry", async () => {
  const { path, members } = await index(
    "nul.tar",
    rawTar([{ name: "././@LongLink", type: "L", body: "a\0b" }, { name: "x" }]),
  );
  await assert.rejects(members, { message: `${path}: entry "a\\x00b": name contains a NUL byte` });
  const bad = await index("type.tar", rawTar([{ name: "odd", type: "Z" }]));
  await assert.rejects(bad.members, { message: `${bad.path}: entry odd: unsupported tar entry type 'Z'` });
});
