/**
 * The consumer forms' tar layer (src/publish/tar-layer.ts) read back by slimroot's Go-parity
 * tar reader for any members (fast-check) and by GNU tar for one: names, modes, owners, sizes,
 * bytes and mtime as given, and the digest the upload is checked against is the stream's.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import fc from "fast-check";
import type { BlobPart } from "../src/image/registry/session.js";
import { partsDigest, type TarMember, tarLayer } from "../src/publish/tar-layer.js";
import { readTar } from "../src/tar/reader.js";

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-tar-layer-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function bytesOf(parts: BlobPart[]): Promise<Buffer> {
  const out: Buffer[] = [];
  for (const p of parts) out.push("bytes" in p ? p.bytes : await readFile(p.file));
  return Buffer.concat(out);
}

const segment = fc.stringMatching(/^[A-Za-z0-9._-]{1,30}$/).filter((s) => s !== "." && s !== "..");

test("any members: the reader gets back each name, mode, owner, mtime and body; the digest is the stream's", async () => {
  let n = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.uniqueArray(
        fc.record({
          path: fc.array(segment, { minLength: 1, maxLength: 3 }).map((a) => a.join("/").slice(0, 100)),
          mode: fc.integer({ min: 0, max: 0o7777 }),
          uid: fc.integer({ min: 0, max: 65535 }),
          body: fc.uint8Array({ maxLength: 3000 }),
          asFile: fc.boolean(),
        }),
        { minLength: 1, maxLength: 5, selector: (m) => m.path },
      ),
      fc.integer({ min: 0, max: 2 ** 33 - 1 }),
      async (specs, epoch) => {
        const members: TarMember[] = [];
        for (const s of specs) {
          const bytes = Buffer.from(s.body);
          let body: BlobPart = { bytes };
          if (s.asFile) {
            const file = join(work, `f${n++}`);
            await writeFile(file, bytes);
            body = { file, size: bytes.length };
          }
          members.push({ name: s.path, mode: s.mode, uid: s.uid, gid: s.uid, body });
        }
        const parts = tarLayer(members, epoch);
        const stream = await bytesOf(parts);
        assert.equal(stream.length % 512, 0);
        const d = await partsDigest(parts);
        assert.equal(d.size, stream.length);
        assert.equal(d.digest, `sha256:${createHash("sha256").update(stream).digest("hex")}`);
        const got = [];
        for await (const e of readTar(Readable.from([stream]))) {
          const chunks: Buffer[] = [];
          for await (const c of e.body) chunks.push(c);
          got.push({
            name: e.name,
            mode: e.mode & 0o7777,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            body: Buffer.concat(chunks),
          });
        }
        assert.deepEqual(
          got,
          specs.map((s) => ({
            name: s.path,
            mode: s.mode,
            uid: s.uid,
            gid: s.uid,
            mtime: epoch,
            body: Buffer.from(s.body),
          })),
        );
      },
    ),
    { numRuns: 60 },
  );
});

test("GNU tar lists a directory and a file with their owners and modes; a name no layer can hold is refused", async () => {
  const path = join(work, "one.tar");
  const parts = tarLayer(
    [
      { name: "disk/", mode: 0o555, uid: 107, gid: 107 },
      {
        name: "disk/disk.img",
        mode: 0o440,
        uid: 107,
        gid: 107,
        body: { bytes: Buffer.from("x".repeat(700)) },
      },
    ],
    0,
  );
  await writeFile(path, await bytesOf(parts));
  const listing = execFileSync("tar", ["-tvf", path, "--numeric-owner", "--full-time"], {
    encoding: "utf8",
    env: { ...process.env, TZ: "UTC" },
  });
  assert.deepEqual(
    listing
      .trim()
      .split("\n")
      .map((l) => l.split(/\s+/).join(" ")),
    [
      "dr-xr-xr-x 107/107 0 1970-01-01 00:00:00 disk/",
      "-r--r----- 107/107 700 1970-01-01 00:00:00 disk/disk.img",
    ],
  );
  assert.throws(
    () => tarLayer([{ name: "a b", mode: 0o644 }], 0),
    /^Error: a b: not a name a layer of this form can hold$/,
  );
  assert.throws(
    () => tarLayer([{ name: "x".repeat(101), mode: 0o644 }], 0),
    /not a name a layer of this form can hold/,
  );
});
