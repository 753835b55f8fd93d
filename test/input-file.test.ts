// Issue 17 item 4: no input is ever opened in a way that can hang. A FIFO (or a link to one)
// given as an image, its .why, a list, a tarball, a layout's blob, a fragment or a profile is
// refused by type in one line, quickly: before the fix each of these blocked in open(), and
// the test's SIGTERM then says whether the process could still be ended.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, rm, symlink, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import fc from "fast-check";
import { openInput, readHead, readInput, readInputText, statInput } from "../src/util/input-file.js";
import { runCliWithin } from "./support/cli.js";
import { tarOf, writeOciLayout } from "./support/layers.js";

let work: string;
let fifo: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-input-"));
  fifo = join(work, "fifo");
  mkfifo(fifo);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function mkfifo(path: string) {
  execFileSync("mkfifo", [path]);
}

/** A hostile case ends by itself in about the CLI's start-up time. */
const QUICK_MS = 20_000;

async function oneLine(args: string[], code = 1): Promise<string> {
  const r = await runCliWithin(QUICK_MS, args, { SLIMROOT_CACHE: join(work, "cache") });
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.equal(r.code, code, `exit code: ${r.stderr}`);
  return lines[0]!;
}

test("the input module refuses a FIFO, a device and a link to a FIFO before opening, at once", async () => {
  const link = join(work, "link-to-fifo");
  await symlink(fifo, link);
  const started = Date.now();
  for (const p of [fifo, link]) {
    await assert.rejects(openInput(p, "IMAGE"), /^Error: IMAGE: is a FIFO, not a regular file$/);
    await assert.rejects(readHead(p, 8), /is a FIFO, not a regular file$/);
    await assert.rejects(readInputText(p), /is a FIFO, not a regular file$/);
  }
  await assert.rejects(
    readInput("/dev/zero"),
    /^Error: \/dev\/zero: is a character device, not a regular file$/,
  );
  await assert.rejects(statInput(work, "X"), /^Error: X: is a directory, not a regular file$/);
  assert.equal((await statInput(work, "X", { directory: true })).isDirectory(), true);
  await assert.rejects(statInput(join(work, "none"), "X"), /^Error: X: no such file$/);
  assert.ok(Date.now() - started < 2000);
});

test("reads are bounded: a whole file by its limit, a line by the line limit, as they are read", async () => {
  const file = join(work, "text");
  await writeFile(file, `short\n${"y".repeat(5000)}\nend\n`);
  const limits = { bytes: 1, entries: 1, depth: 1, read: 100_000, line: 4096 };
  await assert.rejects(
    readInputText(file, "F", limits),
    /^Error: F: line 2 is longer, over the limit of 4096 bytes \(set SLIMROOT_MAX_LINE to raise it\)$/,
  );
  await assert.rejects(
    readInputText(file, "F", { ...limits, read: 1000, line: 10_000 }),
    /^Error: F: 5011 bytes or more, over the limit of 1000 bytes \(set SLIMROOT_MAX_READ to raise it\)$/,
  );
  assert.equal((await readInputText(file, "F", { ...limits, line: 10_000 })).length, 5011);
});

test("the line limit counts bytes, across reads: the first line over it is the one named", async () => {
  const file = join(work, "lines");
  // Lines around the 64 KiB read size, of multibyte characters too (the limit is in bytes).
  const lineOf = fc.tuple(fc.constantFrom("a", "é", "€"), fc.integer({ min: 0, max: 40_000 }));
  await fc.assert(
    fc.asyncProperty(
      fc.array(lineOf, { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 1, max: 60_000 }),
      async (spec, line) => {
        const lines = spec.map(([c, n]) => c.repeat(Math.ceil(n / Buffer.byteLength(c))));
        await writeFile(file, lines.join("\n"));
        const over = lines.findIndex((l) => Buffer.byteLength(l) > line);
        const read = readInputText(file, "F", { bytes: 1, entries: 1, depth: 1, read: 1 << 20, line });
        if (over < 0) assert.equal(await read, lines.join("\n"));
        else
          await assert.rejects(
            read,
            new RegExp(`^Error: F: line ${over + 1} is longer, over the limit of ${line} bytes`),
          );
      },
    ),
    { numRuns: 60 },
  );
});

test("a FIFO as the image: inspect, run and kernel build --embed say so at once", async () => {
  const img = join(work, "image.cpio.gz");
  mkfifo(img);
  const want = `slimroot: ${img}: is a FIFO, not a regular file`;
  assert.equal(await oneLine(["inspect", img]), want);
  assert.equal(await oneLine(["inspect", img, "--json"]), want);
  // run's own failures exit 125, as docker's.
  assert.equal(await oneLine(["run", img, "--dry-run"], 125), want);
  assert.equal(await oneLine(["kernel", "build", "--embed", img, "-o", join(work, "kernel")]), want);
});

test("a FIFO as IMAGE.why: inspect --why says so at once; inspect without --why ignores it", async () => {
  const out = join(work, "real.cpio");
  const r = await runCliWithin(60_000, [
    "build",
    `tar:${await tarFile("real", [{ name: "bin/app", body: "x", mode: 0o755 }])}`,
    "-o",
    out,
    "--compress",
    "none",
    "--minimize",
    "none",
    "--entrypoint",
    "/bin/app",
  ]);
  assert.equal(r.code, 0, r.stderr);
  await unlink(`${out}.why`);
  mkfifo(`${out}.why`);
  assert.equal(
    await oneLine(["inspect", out, "--why"]),
    `slimroot: ${out}.why: is a FIFO, not a regular file`,
  );
  const plain = await runCliWithin(QUICK_MS, ["inspect", out]);
  assert.equal(plain.code, 0, plain.stderr);
});

async function tarFile(name: string, entries: Parameters<typeof tarOf>[0]): Promise<string> {
  const file = join(work, `${name}.tar`);
  await writeFile(file, await tarOf(entries));
  return file;
}

test("a FIFO as a source: list:, tar:, docker-archive:, a layout's index.json or layer blob", async () => {
  const build = (src: string) =>
    oneLine(["build", src, "-o", join(work, "never.cpio"), "--entrypoint", "/bin/true"]);
  assert.equal(await build(`list:${fifo}`), `slimroot: list:${fifo}: is a FIFO, not a regular file`);
  assert.equal(await build(`tar:${fifo}`), `slimroot: tar:${fifo}: is a FIFO, not a regular file`);
  assert.match(await build(`docker-archive:${fifo}`), /: is a FIFO, not a regular file$/);

  const layer = await tarOf([{ name: "bin/true", body: "x", mode: 0o755 }]);
  const blobs = join(work, "layout-blob");
  await writeOciLayout(blobs, { layers: [layer], gzip: false });
  const blob = join(blobs, "blobs", "sha256", createHash("sha256").update(layer).digest("hex"));
  await unlink(blob);
  mkfifo(blob);
  assert.match(await build(`oci:${blobs}`), /: is a FIFO, not a regular file$/);

  const index = join(work, "layout-index");
  await writeOciLayout(index, { layers: [layer] });
  await unlink(join(index, "index.json"));
  mkfifo(join(index, "index.json"));
  assert.equal(
    await build(`oci:${index}`),
    `slimroot: oci:${index}: index.json: is a FIFO, not a regular file`,
  );
});

test("a FIFO as a profile or a kernel fragment says so at once", async () => {
  const src = `tar:${await tarFile("prof", [{ name: "bin/true", body: "x", mode: 0o755 }])}`;
  assert.equal(
    await oneLine(["build", src, "-o", join(work, "p.cpio"), "--minimize", "trace", "--profile", fifo]),
    `slimroot: ${fifo}: is a FIFO, not a regular file`,
  );
  assert.equal(
    await oneLine(["kernel", "build", "--config-fragment", fifo]),
    `slimroot: --config-fragment ${fifo}: is a FIFO, not a regular file`,
  );
});
