// The nginx image built from Debian packages, read from each kind of source, must come out
// exactly as `umoci raw unpack` lays it out, and builds must be byte-for-byte reproducible.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { runCli } from "./support/cli.js";
import { type ImageFixture, nginxFixture } from "./support/fixtures.js";
import { type RegistryServer, startRegistry } from "./support/registry-server.js";
import {
  diffSnapshots,
  isSlimrootFile,
  type Snap,
  snapshotArchive,
  snapshotDir,
} from "./support/snapshot.js";

let work: string;
let nginx: ImageFixture;
let registry: RegistryServer;
let reference: Map<string, Snap>;

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-nginx-"));
  nginx = await nginxFixture();
  reference = await snapshotDir(nginx.unpacked);
  registry = await startRegistry();
  execFileSync("skopeo", [
    "copy",
    "--quiet",
    "--dest-tls-verify=false",
    nginx.ociRef,
    `docker://${registry.host}/nginx:latest`,
  ]);
});
after(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

async function buildAndCompare(source: string, out: string, extra: string[] = []) {
  const r = await runCli(["build", source, "-o", out, ...extra], { SOURCE_DATE_EPOCH: "1" });
  assert.equal(r.code, 0, r.stderr);
  const diff = diffSnapshots(reference, await snapshotArchive(out), isSlimrootFile);
  assert.deepEqual(diff, []);
}

test("oci layout: same files, modes, owners, links and contents as umoci", async () => {
  await buildAndCompare(nginx.ociRef, join(work, "oci.cpio.gz"));
});

test("docker-archive: same tree as umoci", async () => {
  await buildAndCompare(`docker-archive:${nginx.dockerArchive}`, join(work, "archive.cpio.zst"), [
    "--compress",
    "zstd",
  ]);
});

test("registry (docker://, plain http on loopback): same tree as umoci", async () => {
  await buildAndCompare(`docker://${registry.host}/nginx:latest`, join(work, "registry.cpio.xz"), [
    "--insecure",
    "--compress",
    "xz",
  ]);
});

test("the app config is the image's: nginx -g 'daemon off;' on port 80", async () => {
  const r = await runCli(["inspect", "--json", join(work, "oci.cpio.gz")]);
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout);
  assert.deepEqual(info.app.args, ["nginx", "-g", "daemon off;"]);
  assert.deepEqual(info.app.ports, ["80/tcp"]);
  assert.ok(info.entries.some((e: { path: string }) => e.path === "usr/sbin/nginx"));
});

test("SOURCE_DATE_EPOCH=1 twice gives the same sha256", async () => {
  const sums: string[] = [];
  for (const name of ["a.cpio.gz", "b.cpio.gz"]) {
    const out = join(work, name);
    const r = await runCli(["build", nginx.ociRef, "-o", out], { SOURCE_DATE_EPOCH: "1" });
    assert.equal(r.code, 0, r.stderr);
    sums.push(
      createHash("sha256")
        .update(await readFile(out))
        .digest("hex"),
    );
  }
  assert.equal(sums[0], sums[1]);
});

test("an unknown tag in the registry fails with one line naming the reference", async () => {
  const out = join(work, "missing.cpio.gz");
  const r = await runCli(["build", `docker://${registry.host}/nginx:nope`, "--insecure", "-o", out]);
  assert.equal(r.code, 1);
  assert.match(r.stderr.trim(), new RegExp(`^slimroot: docker://${registry.host}/nginx:nope: .*404`));
});
