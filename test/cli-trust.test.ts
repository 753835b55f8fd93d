// Issue 7, the CLI's side: nothing from a profile runs on the host, outputs are never the
// input or a device, the image and its .why are replaced together, one clear line for what
// the user got wrong, and a CLI that behaves in a pipe and on every stop signal.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { runCli } from "./support/cli.js";
import { tarOf } from "./support/layers.js";
import { pushTestImage, withRegistry } from "./support/registry-server.js";

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-cli-trust-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A tiny root directory: enough for a build that needs no boot. */
async function rootDir(name: string): Promise<string> {
  const dir = join(work, name);
  await mkdir(join(dir, "bin"), { recursive: true });
  await writeFile(join(dir, "bin", "app"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
  return dir;
}

/** Exit status 1, exactly one line on stderr matching `pattern`. */
function assertOneLine(r: { code: number; stderr: string }, pattern: RegExp, code = 1): void {
  assert.equal(r.code, code, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0]!, pattern);
}

test("a profile's exec: probe is never run: refused with one line naming the profile", async () => {
  const root = await rootDir("profile-exec");
  const marker = join(work, "owned-by-profile");
  const profile = join(work, "evil.profile");
  await writeFile(
    profile,
    `# slimroot profile v1\n# probes: ${JSON.stringify(["http:80/", `exec:touch ${marker}`])}\n/bin/app\n`,
  );
  const outDir = await mkdtemp(join(work, "out-"));
  const out = join(outDir, "app.cpio");
  const r = await runCli([
    "build",
    `dir:${root}`,
    "--entrypoint",
    "/bin/app",
    "--minimize",
    "trace",
    "--profile",
    profile,
    "-o",
    out,
  ]);
  assertOneLine(
    r,
    /^slimroot: .*evil\.profile: refusing the profile's probe "exec:touch .*--allow-profile-exec/,
  );
  assert.equal(existsSync(marker), false, "the profile's command did not run");
  assert.deepEqual(await readdir(outDir), [], "no output");
  // --no-verify runs no probe at all, so the profile is fine for it.
  const quiet = await runCli([
    "build",
    `dir:${root}`,
    "--entrypoint",
    "/bin/app",
    "--minimize",
    "trace",
    "--profile",
    profile,
    "--no-verify",
    "-o",
    out,
  ]);
  assert.equal(quiet.code, 0, quiet.stderr);
  assert.equal(existsSync(marker), false);
  assert.ok((await readFile(out)).length > 0);
});

test("SLIMROOT_CACHE moves the blob cache too (one cache root)", async () => {
  await withRegistry({}, async (registry) => {
    const layer = await tarOf([{ name: "bin/app", body: "#!/bin/sh\n", mode: 0o755 }]);
    const image = await pushTestImage(registry.url, "cache/app", "latest", [layer]);
    const cache = join(work, "moved-cache");
    const xdg = join(work, "xdg");
    const r = await runCli(
      [
        "build",
        `docker://${registry.host}/cache/app:latest`,
        "--insecure",
        "--entrypoint",
        "/bin/app",
        "-o",
        join(work, "cache.cpio"),
      ],
      { SLIMROOT_CACHE: cache, XDG_CACHE_HOME: xdg },
    );
    assert.equal(r.code, 0, r.stderr);
    const blobs = await readdir(join(cache, "blobs", "sha256"));
    assert.ok(
      blobs.includes(image.layers[0]!.digest.slice(7)),
      `the layer is under $SLIMROOT_CACHE: ${blobs}`,
    );
    assert.equal(existsSync(join(xdg, "slimroot")), false, "nothing under $XDG_CACHE_HOME");
  });
});
