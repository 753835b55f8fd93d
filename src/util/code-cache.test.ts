import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

const dir = mkdtempSync(join(tmpdir(), "code-cache-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));

// The driver runs a script through runCached in a process of its own (the cache is written at exit).
const driver = join(dir, "driver.mjs");
writeFileSync(
  driver,
  `import { runCached } from ${JSON.stringify(join(import.meta.dirname, "code-cache.ts"))};
const use = runCached(process.argv[2], process.argv[3] === "-" ? undefined : process.argv[3], "t");
process.stderr.write("USE " + use + "\\n");
`,
);

// What a CommonJS script relies on: its require, __filename/__dirname, strict mode (as the
// bundle's "use strict"), a function compiled lazily; THROW: an error whose line is checked.
const SCRIPT = `"use strict";
const { basename, dirname } = require("node:path");
function lazy() { return 6 * 7; }
const strict = (function () { return this === undefined; })();
console.log(JSON.stringify({ file: basename(__filename), dir: __dirname === dirname(__filename), strict, lazy: lazy() }));
if (process.env.THROW) throw new Error("boom");
`;
const THROW_LINE = 6;

function run(script: string, cacheDir: string, env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, ["--import", "tsx", driver, script, cacheDir], {
    encoding: "utf8",
    env: { ...process.env, ...env },
  });
  const use = /USE (\w+)/.exec(r.stderr)?.[1];
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, use };
}

const bins = (cacheDir: string) => {
  try {
    return readdirSync(cacheDir).filter((n) => n.endsWith(".bin"));
  } catch {
    return [];
  }
};

test("a script runs the same from no cache, then from the cache written at its first exit", () => {
  const script = join(dir, "a.cjs");
  writeFileSync(script, SCRIPT);
  const cache = join(dir, "cache-a");
  const first = run(script, cache);
  assert.equal(first.status, 0, first.stderr);
  assert.equal(first.use, "miss");
  assert.deepEqual(JSON.parse(first.stdout), { file: "a.cjs", dir: true, strict: true, lazy: 42 });
  const bin = bins(cache)[0] ?? "";
  assert.ok(bin.startsWith("t-"), `one cache file: ${bins(cache)}`);
  assert.equal(statSync(join(cache, bin)).mode & 0o777, 0o600);
  assert.deepEqual(
    readdirSync(cache).filter((n) => n !== bin),
    [],
    "no temp file left",
  );
  const second = run(script, cache);
  assert.equal(second.use, "hit");
  assert.equal(second.stdout, first.stdout);
});

test("stack traces name the script and its own line numbers, from the cache too", () => {
  const script = join(dir, "throws.cjs");
  writeFileSync(script, SCRIPT);
  const cache = join(dir, "cache-throws");
  // A failing run leaves its cache too (it ran): the second start is from it.
  for (let i = 0; i < 2; i++) {
    const r = run(script, cache, { THROW: "1" });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, new RegExp(`${script.replaceAll(".", "\\.")}:${THROW_LINE}\\b`));
    assert.match(r.stderr, /Error: boom/);
    assert.equal(bins(cache).length, 1);
  }
});

test("a changed script gets a new cache, and the old one is removed", () => {
  const script = join(dir, "b.cjs");
  writeFileSync(script, SCRIPT);
  const cache = join(dir, "cache-b");
  run(script, cache);
  const [old] = bins(cache);
  // Same length, other text: only the key (size, mtime, inode) tells them apart.
  writeFileSync(script, SCRIPT.replace("6 * 7", "7 * 6"));
  utimesSync(script, new Date(), new Date(Date.now() + 5000));
  const r = run(script, cache);
  assert.equal(r.use, "miss");
  assert.equal(JSON.parse(r.stdout).lazy, 42);
  const now = bins(cache);
  assert.equal(now.length, 1);
  assert.notEqual(now[0], old);
});

test("a cache V8 refuses is ignored and replaced; one others may write is not read", () => {
  const script = join(dir, "c.cjs");
  writeFileSync(script, SCRIPT);
  const cache = join(dir, "cache-c");
  run(script, cache);
  const file = join(cache, bins(cache)[0]!);
  writeFileSync(file, Buffer.alloc(4096, 0x5a), { mode: 0o600 });
  const rejected = run(script, cache);
  assert.equal(rejected.status, 0, rejected.stderr);
  assert.equal(rejected.use, "rejected");
  assert.equal(JSON.parse(rejected.stdout).lazy, 42);
  assert.equal(run(script, cache).use, "hit", "rewritten at the refused run's exit");
  chmodSync(file, 0o620);
  assert.equal(run(script, cache).use, "miss", "group-writable: not trusted");
});

test("an unwritable cache directory costs nothing but the cache", () => {
  const script = join(dir, "d.cjs");
  writeFileSync(script, SCRIPT);
  const blocker = join(dir, "not-a-dir");
  writeFileSync(blocker, "");
  for (let i = 0; i < 2; i++) {
    const r = run(script, join(blocker, "cache"));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.use, "miss");
    assert.equal(r.stderr, "USE miss\n");
  }
  const off = run(script, "-");
  assert.equal(off.use, "off");
  assert.equal(JSON.parse(off.stdout).lazy, 42);
});

test("two copies of a script (two installations) keep a cache each", () => {
  const cache = join(dir, "cache-e");
  const copies = ["e1.cjs", "e2.cjs"].map((n) => join(dir, n));
  for (const c of copies) writeFileSync(c, SCRIPT);
  for (const c of copies) assert.equal(run(c, cache).use, "miss");
  for (const c of copies) assert.equal(run(c, cache).use, "hit");
  assert.equal(bins(cache).length, 2);
});
