// The build command's flags as a user meets them, on the busybox image built from Debian packages.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { runCli } from "./support/cli.js";
import { busyboxFixture, type ImageFixture } from "./support/fixtures.js";
import { snapshotArchive } from "./support/snapshot.js";

let work: string;
let busybox: ImageFixture;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-options-"));
  busybox = await busyboxFixture("amd64");
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function inspectJson(file: string) {
  const r = await runCli(["inspect", "--json", file]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test("overrides: --entrypoint, command after --, -e, -w, -u NAME resolved in the image", async () => {
  const out = join(work, "over.cpio.lz4");
  const r = await runCli([
    "build",
    busybox.ociRef,
    "-o",
    out,
    "--entrypoint",
    "/bin/sh",
    "-e",
    "GREETING=hello world",
    "-e",
    "PATH=/bin",
    "-w",
    "/home/app",
    "-u",
    "app",
    "--",
    "-c",
    "echo $GREETING",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const info = await inspectJson(out);
  assert.equal(info.compression, "lz4");
  assert.deepEqual(info.app.args, ["/bin/sh", "-c", "echo $GREETING"]);
  assert.ok(info.app.env.includes("GREETING=hello world"));
  assert.ok(info.app.env.includes("PATH=/bin"));
  assert.ok(info.app.env.includes("HOME=/home/app"));
  assert.equal(info.app.workdir, "/home/app");
  assert.deepEqual([info.app.uid, info.app.gid], [1000, 1000]);
  assert.equal(info.app.user, "app");
});

test("an unknown user is a one-line error naming it", async () => {
  const r = await runCli(["build", busybox.ociRef, "-o", join(work, "u.cpio"), "-u", "nobody-here"]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, "slimroot: user nobody-here: not found in the image's /etc/passwd\n");
});

test("--add copies host files owned by root, or by --chown; links stay links", async () => {
  const conf = join(work, "conf");
  await mkdir(join(conf, "sub"), { recursive: true });
  await writeFile(join(conf, "nginx.conf"), "worker_processes 1;\n");
  await writeFile(join(conf, "sub", "site"), "server {}\n");
  await symlink("nginx.conf", join(conf, "current"));
  const out = join(work, "add.cpio.gz");
  const r = await runCli([
    "build",
    busybox.ociRef,
    "-o",
    out,
    "--add",
    `${conf}:/opt/app/conf`,
    "--add",
    `${join(conf, "nginx.conf")}:/etc/extra.conf`,
    "--chown",
    "1000:1000",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const snap = await snapshotArchive(out);
  assert.equal(snap.get("opt/app/conf/nginx.conf")?.owner, "1000:1000");
  assert.equal(snap.get("opt/app/conf/sub/site")?.type, "file");
  assert.equal(snap.get("opt/app/conf/current")?.target, "nginx.conf");
  assert.equal(snap.get("etc/extra.conf")?.type, "file");
  assert.equal(snap.get("opt")?.owner, "0:0", "parents made for --add belong to root");
});

test("dir: and tar: sources give the same tree as the OCI image", async () => {
  const fromOci = join(work, "oci.cpio");
  const fromTar = join(work, "tar.cpio");
  const fromDir = join(work, "dir.cpio");
  for (const [src, out] of [
    [busybox.ociRef, fromOci],
    [`tar:${busybox.rootfsTar}`, fromTar],
    [`dir:${busybox.unpacked}`, fromDir],
  ] as const) {
    const r = await runCli(["build", src, "-o", out, "--entrypoint", "/bin/sh"]);
    assert.equal(r.code, 0, `${src}: ${r.stderr}`);
  }
  const oci = await snapshotArchive(fromOci);
  assert.deepEqual(await snapshotArchive(fromTar), oci);
  assert.deepEqual(await snapshotArchive(fromDir), oci);
});

test("the init and the app config are in the image, and GNU cpio can list it", async () => {
  const out = join(work, "plain.cpio");
  const r = await runCli(["build", busybox.ociRef, "-o", out]);
  assert.equal(r.code, 0, r.stderr);
  const names = execFileSync("sh", ["-c", `cpio -it --quiet < ${out}`])
    .toString()
    .split("\n");
  assert.ok(names.includes("init"));
  assert.ok(names.includes("etc/slimroot/app.conf"));
  assert.ok(names.includes("bin/busybox"));
  const text = (await runCli(["inspect", out])).stdout;
  assert.match(text, /app: \["sh"\]/);
  assert.match(text, /-rwxr-xr-x 0:0 +\d+ +\/init/);
});
