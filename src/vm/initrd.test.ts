import assert from "node:assert/strict";
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";
import { decodeAppConfig } from "../appconfig/appconfig.js";
import { decompressor } from "../compress/compress.js";
import { readCpio } from "../cpio/reader.js";
import { joinInitrd } from "./initrd.js";
import { REPORT_KEY_PATH } from "./report.js";
import { runConfCpio, runConfText } from "./runconf.js";

let dir = "";
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "slimroot-initrd-test-"));
});
after(() => rm(dir, { recursive: true, force: true }));

test("run.conf: network, modules, args and env, escaped as app.conf is", () => {
  const t = runConfText({
    network: true,
    env: ["A=1", "B=two\nlines"],
    args: ["sh", "-c", "echo \\ok"],
    modulesDir: "/etc/slimroot/modules",
  });
  assert.match(t, /^ip 10\.0\.2\.15\/24$/m);
  assert.match(t, /^gateway 10\.0\.2\.2$/m);
  assert.match(t, /^dns 10\.0\.2\.3$/m);
  assert.match(t, /^modules \/etc\/slimroot\/modules$/m);
  const c = decodeAppConfig(t);
  assert.deepEqual(c.env, ["A=1", "B=two\nlines"]);
  assert.deepEqual(c.args, ["sh", "-c", "echo \\ok"]);
  assert.throws(() => runConfText({ network: false, env: ["NOVALUE"] }), /NAME=VALUE/);
  assert.throws(() => runConfText({ network: false, env: [], args: ["a\0b"] }), /NUL/);
});

test("joined archives start on 4-byte boundaries and read back as one", async () => {
  const conf = await runConfCpio(runConfText({ network: false, env: ["X=1"] }));
  // A gzip member of odd length first, as a compressed image usually is.
  const first = gzipSync(await runConfCpio("version 1\n"));
  const firstPath = join(dir, "first.gz");
  await writeFile(firstPath, first);
  assert.notEqual(first.length % 4, 0, "the test wants a misaligned first archive");
  const out = join(dir, "initrd");
  const size = await joinInitrd([firstPath, conf], out);
  const bytes = await readFile(out);
  assert.equal(bytes.length, size);
  const confAt = first.length + ((4 - (first.length % 4)) % 4);
  assert.equal(confAt % 4, 0);
  assert.equal(bytes.toString("latin1", confAt, confAt + 6), "070701");
  const names: string[] = [];
  for await (const e of readCpio(createReadStream(out, { start: confAt }))) names.push(e.name);
  assert.deepEqual(names, [".", "etc", "etc/slimroot", "etc/slimroot/run.conf"]);
  const gz: string[] = [];
  for await (const e of readCpio(createReadStream(firstPath).pipe(decompressor("gzip", "test"))))
    gz.push(e.name);
  assert.ok(gz.includes("etc/slimroot/run.conf"));
});

test("the report key travels beside run.conf, not in it: a file for the init alone (0600)", async () => {
  const key = "c3".repeat(16);
  const text = runConfText({ network: true, env: [] });
  assert.ok(!text.includes(key));
  const out = join(dir, "keyed");
  await writeFile(out, await runConfCpio(text, key));
  const files = new Map<string, { mode: number; body: string }>();
  for await (const e of readCpio(createReadStream(out)))
    if (e.body) files.set(e.name, { mode: e.mode & 0o7777, body: e.body.toString() });
  assert.deepEqual(files.get(REPORT_KEY_PATH), { mode: 0o600, body: key });
  assert.equal(files.get("etc/slimroot/run.conf")?.body, text);
  // A kernel with its app built in gets the key alone.
  const alone: string[] = [];
  for await (const e of readCpio(Readable.from([await runConfCpio(undefined, key)]))) alone.push(e.name);
  assert.deepEqual(alone, [".", "etc", "etc/slimroot", REPORT_KEY_PATH]);
});
