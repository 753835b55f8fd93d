/**
 * The built CLI (dist/cli/main.js, scripts/bundle-cli.ts): the same answers as from source,
 * from V8's code cache it keeps under the cache root, one per command.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { REPO } from "./support/cli.js";

const MAIN = join(REPO, "dist", "cli", "main.js");

function newestSource(dir: string): number {
  return Math.max(
    0,
    ...readdirSync(dir, { withFileTypes: true }).map((e) =>
      e.isDirectory() ? newestSource(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs,
    ),
  );
}

const stale = !existsSync(MAIN)
  ? "no dist/cli/main.js: run npm run build"
  : statSync(MAIN).mtimeMs < newestSource(join(REPO, "src"))
    ? "dist/cli/main.js is older than src/: run npm run build"
    : undefined;

const dir = mkdtempSync(join(tmpdir(), "built-cli-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: string[], env: NodeJS.ProcessEnv, cwd = dir) {
  const r = spawnSync(process.execPath, [MAIN, ...args], {
    cwd,
    encoding: "utf8",
    env: { ...process.env, ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const caches = (root: string) => {
  const d = join(root, "cli-code");
  return existsSync(d) ? readdirSync(d).sort() : [];
};

test("the built CLI builds an image the same from no cache and from its code cache", { skip: stale }, () => {
  const cache = join(dir, "cache");
  const empty = join(dir, "empty");
  mkdirSync(empty);
  const outputs: Buffer[] = [];
  for (const name of ["a.cpio", "b.cpio"]) {
    // The init comes from the repository (init-binary.ts's import.meta.url, in the bundle too).
    const r = cli(["build", "dir:empty", "--entrypoint", "/bin/app", "--compress", "none", "-o", name], {
      SLIMROOT_CACHE: cache,
    });
    assert.equal(r.code, 0, r.stderr);
    outputs.push(readFileSync(join(dir, name)));
  }
  assert.deepEqual(outputs[1], outputs[0]);
  assert.deepEqual(
    caches(cache).map((n) => n.split("-")[0]),
    ["build"],
  );
});

test("help, version and errors answer as before, with or without a code cache", { skip: stale }, () => {
  const cache = join(dir, "cache-2");
  for (const env of [
    { SLIMROOT_CACHE: cache },
    { SLIMROOT_CACHE: cache },
    { SLIMROOT_CACHE: join(dir, "unused"), SLIMROOT_NO_CODE_CACHE: "1" },
  ]) {
    const version = cli(["--version"], env);
    assert.deepEqual([version.code, version.stdout], [0, "0.1.0\n"]);
    const help = cli(["--help"], env);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^ {2}run \[options\] <image>/m);
    // run's own rule: every error of slimroot's is 125, one line.
    const missing = cli(["run", "--dry-run", "no-such.cpio"], env);
    assert.equal(missing.code, 125);
    assert.match(missing.stderr, /^slimroot: no-such\.cpio: no such file\n$/);
  }
  assert.deepEqual(
    caches(cache).map((n) => n.split("-")[0]),
    ["cli", "run"],
  );
  assert.deepEqual(caches(join(dir, "unused")), []);
});
