import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { test } from "node:test";
import { writeFileAtomically, writeFilesAtomically } from "./atomic.js";

test("files written together: a rename that fails puts back the ones already replaced", async () => {
  const dir = await mkdtemp(join(tmpdir(), "slimroot-atomic-"));
  try {
    await mkdir(join(dir, "a"));
    await mkdir(join(dir, "b"));
    const image = join(dir, "a", "image");
    const why = join(dir, "b", "image.why");
    await writeFile(image, "old image");
    await writeFile(why, "old why");
    await assert.rejects(
      writeFilesAtomically(
        [
          { target: image, source: Readable.from(["new image"]) },
          { target: why, source: Readable.from(["new why"]) },
        ],
        // The second rename cannot happen: its directory is gone (with the temp file in it).
        async () => rm(join(dir, "b"), { recursive: true }),
      ),
      /ENOENT/,
    );
    assert.equal(await readFile(image, "utf8"), "old image");
    assert.deepEqual(await readdir(join(dir, "a")), ["image"], "no temp or backup file left");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("files written together are all replaced; a source that fails leaves every target", async () => {
  const dir = await mkdtemp(join(tmpdir(), "slimroot-atomic-"));
  try {
    const a = join(dir, "x");
    const b = join(dir, "x.why");
    await writeFile(a, "old");
    const bytes = await writeFilesAtomically([
      { target: a, source: Readable.from(["new!"]) },
      { target: b, source: Readable.from(["why"]) },
    ]);
    assert.deepEqual(bytes, [4, 3]);
    assert.equal(await readFile(a, "utf8"), "new!");
    assert.equal(await readFile(b, "utf8"), "why");
    const failing = new Readable({
      read() {
        this.destroy(new Error("source broke"));
      },
    });
    await assert.rejects(
      writeFilesAtomically([
        { target: a, source: Readable.from(["newer"]) },
        { target: b, source: failing },
      ]),
      /source broke/,
    );
    assert.equal(await readFile(a, "utf8"), "new!");
    assert.equal(await readFile(b, "utf8"), "why");
    assert.deepEqual((await readdir(dir)).sort(), ["x", "x.why"]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("an input that cannot be opened is named as such, not as the output", async () => {
  const dir = await mkdtemp(join(tmpdir(), "slimroot-atomic-"));
  try {
    const { createReadStream } = await import("node:fs");
    const missing = join(dir, "gone");
    await assert.rejects(
      writeFileAtomically(join(dir, "out"), createReadStream(missing)),
      (err: Error) => err.message === `${missing}: cannot read (ENOENT)`,
    );
    assert.deepEqual(await readdir(dir), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
