// Minimization levels on real Debian images: what stays, what goes, and why.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { runCli } from "./support/cli.js";
import { busyboxFixture, type ImageFixture, nginxFixture } from "./support/fixtures.js";
import { tarOf, writeOciLayout } from "./support/layers.js";

let work: string;
let nginx: ImageFixture;
let busybox: ImageFixture;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-minimize-"));
  nginx = await nginxFixture();
  busybox = await busyboxFixture("amd64");
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function buildAndList(source: string, level: string, extra: string[] = []) {
  const out = join(work, `${level}-${Math.random().toString(36).slice(2)}.cpio.gz`);
  const r = await runCli(["build", source, "--minimize", level, "-o", out, ...extra]);
  assert.equal(r.code, 0, r.stderr);
  const info = await runCli(["inspect", "--json", "--why", out]);
  assert.equal(info.code, 0, info.stderr);
  const entries = JSON.parse(info.stdout).entries as {
    path: string;
    why: string;
    size: number;
    mode: number;
  }[];
  return { out, r, entries, paths: new Set(entries.map((e) => e.path)) };
}

test("static keeps nginx's ELF closure, /etc and the directory skeleton, and explains every entry", async () => {
  const { paths, entries } = await buildAndList(nginx.ociRef, "static");
  for (const p of [
    "usr/sbin/nginx",
    "usr/lib/x86_64-linux-gnu/libc.so.6",
    "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "lib64",
    "usr/lib64/ld-linux-x86-64.so.2",
    "usr/lib/x86_64-linux-gnu/libpcre2-8.so.0",
    "etc/nginx/nginx.conf",
    "etc/passwd",
    "var/lib/nginx",
    "var/log/nginx",
    "tmp",
    "init",
    "etc/slimroot/app.conf",
  ]) {
    assert.ok(paths.has(p), `${p} kept`);
  }
  assert.ok(!paths.has("usr/bin/bash"), "bash is not needed by nginx");
  // bookworm's glibc has files and dns built in: their modules are stubs it never opens, and
  // its nsswitch.conf names no other service the image has a module for.
  for (const p of ["libnss_files.so.2", "libnss_dns.so.2", "libnss_compat.so.2", "libresolv.so.2"])
    assert.ok(!paths.has(`usr/lib/x86_64-linux-gnu/${p}`), `${p} dropped`);
  const isFile = (e: { mode: number }) => (e.mode & 0o170000) === 0o100000;
  assert.ok(!entries.some((e) => isFile(e) && e.path.startsWith("usr/share/doc/")), "no docs");
  for (const e of entries) {
    assert.ok(e.why && !e.why.startsWith("(not in"), `${e.path} has a reason`);
  }
  assert.match(entries.find((e) => e.path === "usr/lib/x86_64-linux-gnu/libc.so.6")!.why, /needed by/);
});

test("safe drops docs, manuals and the package database, and keeps the rest", async () => {
  const none = await buildAndList(nginx.ociRef, "none");
  const safe = await buildAndList(nginx.ociRef, "safe");
  assert.ok([...none.paths].some((p) => p.startsWith("var/lib/dpkg/info/")));
  assert.ok(![...safe.paths].some((p) => p.startsWith("var/lib/dpkg/info/")));
  assert.ok(![...safe.paths].some((p) => /^usr\/share\/(doc|man)\/.+\/./.test(p)));
  assert.ok(
    safe.paths.has("usr/share/nginx/html/index.html") ||
      safe.paths.has("var/www/html/index.nginx-debian.html"),
  );
  assert.ok(safe.paths.has("usr/bin/bash"));
});

test("--keep and --drop globs, and a static binary brings only itself", async () => {
  const { paths } = await buildAndList(busybox.ociRef, "static", [
    "--keep",
    "/home/**",
    "--drop",
    "/etc/group",
  ]);
  assert.ok(paths.has("bin/busybox"));
  assert.ok(paths.has("bin/sh"), "the symlink argv[0] resolved through");
  assert.ok(!paths.has("bin/ls"), "other applets are not kept");
  assert.ok(paths.has("home/app"));
  assert.ok(!paths.has("etc/group"));
});

test("a missing library is a warning naming it, and an error with --strict", async () => {
  // /bin/ls from this machine without its libraries: the closure cannot find libselinux.
  const layout = join(work, "broken");
  await writeOciLayout(layout, {
    layers: [await tarOf([{ name: "bin/ls", body: await readFile("/bin/ls"), mode: 0o755 }])],
    config: { Entrypoint: ["/bin/ls"] },
  });
  const warn = await buildAndList(`oci:${layout}:latest`, "static");
  assert.match(warn.r.stderr, /warning: .*ld-linux-x86-64\.so\.2, interpreter of \/bin\/ls: not found/);
  const r = await runCli([
    "build",
    `oci:${layout}:latest`,
    "--minimize",
    "static",
    "--strict",
    "-o",
    join(work, "strict.cpio"),
  ]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^slimroot: --strict: .*not found/);
});
