// Hostile and broken input: one clear line, a non-zero exit, nothing written outside, and an
// existing output file left exactly as it was.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";
import { runCli, startCli } from "./support/cli.js";
import { type LayerEntry, tarOf, writeOciLayout } from "./support/layers.js";

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-hostile-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const PREVIOUS = "previous output, must survive\n";

async function expectRefused(source: string, pattern: RegExp, extra: string[] = [], code = 1) {
  const outDir = await mkdtemp(join(work, "out-"));
  const out = join(outDir, "image.cpio.gz");
  await writeFile(out, PREVIOUS);
  const r = await runCli(["build", source, "-o", out, "--entrypoint", "/bin/true", ...extra]);
  assert.equal(r.code, code, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.equal(await readFile(out, "utf8"), PREVIOUS);
  assert.deepEqual(await readdir(outDir), ["image.cpio.gz"], "no temp file left behind");
  return lines[0]!;
}

async function layout(name: string, layers: LayerEntry[][], gzip = true) {
  const dir = join(work, name);
  await writeOciLayout(dir, { layers: await Promise.all(layers.map(tarOf)), gzip });
  return `oci:${dir}:latest`;
}

test("an entry climbing out with ../ is refused and nothing lands outside", async () => {
  const src = await layout("dotdot", [[{ name: "../../x", body: "escaped" }]]);
  await expectRefused(src, /entry \.\.\/\.\.\/x: .*escapes the image root/);
  assert.equal(existsSync(join(work, "x")), false);
  assert.equal(existsSync("/x"), false);
});

test("a file written through an absolute symlink is refused", async () => {
  const src = await layout("through", [
    [{ name: "evil", type: "symlink", linkname: "/tmp" }],
    [{ name: "evil/planted", body: "owned" }],
  ]);
  await expectRefused(src, /entry evil\/planted: written through symlink evil -> \/tmp/);
  assert.equal(existsSync("/tmp/planted"), false);
});

test("a hard link to the host's /etc/passwd is refused", async () => {
  const src = await layout("hardlink", [[{ name: "passwd", type: "link", linkname: "/etc/passwd" }]]);
  await expectRefused(src, /entry passwd: hard link target \/etc\/passwd is not in the image/);
  const up = await layout("hardlink-up", [[{ name: "p", type: "link", linkname: "../../../etc/passwd" }]]);
  await expectRefused(up, /escapes the image root/);
});

test("a truncated gzip layer names the layer", async () => {
  const dir = join(work, "trunc-gz");
  await writeOciLayout(dir, {
    layers: [await tarOf([{ name: "a", body: "x".repeat(100_000) }])],
    gzip: true,
  });
  // Cut the layer blob in half in place (its digest no longer matches either, and either error is fine).
  const blobs = join(dir, "blobs", "sha256");
  const index = JSON.parse(await readFile(join(dir, "index.json"), "utf8"));
  const manifest = JSON.parse(await readFile(join(blobs, index.manifests[0].digest.slice(7)), "utf8"));
  const layerFile = join(blobs, manifest.layers[0].digest.slice(7));
  const data = await readFile(layerFile);
  await writeFile(layerFile, data.subarray(0, data.length >> 1));
  await expectRefused(`oci:${dir}:latest`, /layer sha256:[0-9a-f]{64} of oci:.*(truncated|digest mismatch)/);
});

test("a tar header claiming more bytes than follow is refused", async () => {
  const tar = await tarOf([{ name: "big", body: "y".repeat(4096) }]);
  const cut = tar.subarray(0, 512 + 1000);
  const file = join(work, "cut.tar");
  await writeFile(file, cut);
  await expectRefused(`tar:${file}`, /tar:.*cut\.tar: truncated tar: entry big is cut short/);
  const gz = join(work, "cut.tar.gz");
  await writeFile(gz, gzipSync(cut));
  await expectRefused(`tar:${gz}`, /tar:.*cut\.tar\.gz: truncated tar: entry big is cut short/);
});

test("an unknown --platform lists what the image has", async () => {
  const src = await layout("platform", [[{ name: "a", body: "a" }]]);
  // A single-platform layout has nothing to choose from: the request is checked against it.
  await expectRefused(src, /no image for platform linux\/s390x; available: linux\/amd64/, [
    "--platform",
    "linux/s390x",
  ]);
});

test("bad flags and sources exit 1 with one line", async () => {
  await expectRefused("nosuch:thing", /unknown image source/);
  await expectRefused(`oci:${join(work, "missing")}`, /not an OCI layout/);
  await expectRefused("dir:/nonexistent/dir", /\/nonexistent\/dir: no such file or directory/);
  await expectRefused("tar:/nonexistent.tar", /no such file/);
  await expectRefused(
    await layout("flags", [[{ name: "a", body: "a" }]]),
    /option '--compress <kind>' argument 'rar' is invalid/,
    ["--compress", "rar"],
  );
});

test("Ctrl-C during a build leaves the previous output and no temp files or spool behind", async () => {
  const tmp = await mkdtemp(join(work, "tmp-"));
  const outDir = await mkdtemp(join(work, "out-"));
  const out = join(outDir, "big.cpio.xz");
  await writeFile(out, PREVIOUS);
  // A layer big enough that the build is still running when the signal comes.
  const src = await layout("interrupt", [
    Array.from({ length: 40 }, (_, i) => ({ name: `f${i}`, body: randomBytes(1 << 20) })),
  ]);
  const build = startCli(["build", src, "-o", out, "--entrypoint", "/bin/true"], { TMPDIR: tmp });
  const deadline = Date.now() + 30_000;
  const spools = async () => (await readdir(tmp)).filter((f) => f.startsWith("slimroot-spool-"));
  while ((await spools()).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal((await spools()).length, 1, "the build started spooling");
  build.child.kill("SIGINT");
  assert.equal(await build.exited, 130, build.stderr);
  assert.equal(await readFile(out, "utf8"), PREVIOUS);
  assert.deepEqual(await readdir(outDir), ["big.cpio.xz"]);
  assert.deepEqual(await spools(), [], "the spool is gone");
});
