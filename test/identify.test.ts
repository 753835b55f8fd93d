/**
 * artifact/identify over every kind, on real files: images built by the CLI (initramfs
 * compressed and not, amd64 and arm64, the three disk formats, an initramfs-list directory),
 * Debian's kernel from the cache, and an arm64 Image with a slimroot image built in (made
 * here as kernel build --embed lays it out: a plain-header gzip cpio inside the kernel).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";
import { diskEntries } from "../src/artifact/disk.js";
import { type Artifact, artifactArch, identify } from "../src/artifact/identify.js";
import { fetchedKernelDir, readManifest } from "../src/kernel/manifest.js";
import { UserError } from "../src/util/errors.js";
import { appBuilder } from "./support/app-build.js";
import { runCli } from "./support/cli.js";

let work: string;
/** Builds the test rootfs with `args`; the output's path. */
let built: (name: string, args: string[]) => Promise<string>;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-identify-"));
  built = await appBuilder(work);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function kindOf<K extends Artifact["kind"]>(a: Artifact, kind: K): Extract<Artifact, { kind: K }> {
  assert.equal(a.kind, kind);
  return a as Extract<Artifact, { kind: K }>;
}

test("an initramfs: its compression, /init's architecture and app config, in one value", async () => {
  for (const [name, args, compression, arch] of [
    ["a.cpio.gz", [], "gzip", "amd64"],
    ["a.cpio.zst", ["--compress", "zstd"], "zstd", "amd64"],
    ["arm.cpio", ["--compress", "none", "--platform", "linux/arm64"], "none", "arm64"],
  ] as const) {
    const a = kindOf(await identify(await built(name, [...args])), "initramfs");
    assert.equal(a.compression, compression, name);
    assert.equal(a.arch, arch, name);
    assert.deepEqual(a.app?.args, ["/usr/bin/app"], name);
    assert.equal(artifactArch(a), arch);
  }
});

test("a disk: format and identity; /init's architecture and app config where the tool reads them", async () => {
  for (const format of ["ext4", "squashfs", "erofs"] as const) {
    const path = await built(`d.${format}`, ["--format", format]);
    const a = kindOf(await identify(path), "disk");
    assert.equal(a.identity.format, format);
    assert.equal(a.bytes, (await readFile(path)).length);
    if (format === "erofs") {
      // erofs-utils 1.5 reads no single file: identify (run) does not extract; diskEntries does.
      assert.equal(a.arch, undefined);
      assert.match(a.noArch ?? "", /erofs-utils 1\.5 reads no single file/);
      assert.throws(() => artifactArch(a), UserError);
      const listed = await diskEntries(path, "erofs");
      assert.ok(typeof listed === "object", String(listed));
      assert.equal(listed.facts?.arch, "amd64");
      assert.deepEqual(listed.facts?.app?.args, ["/usr/bin/app"]);
      assert.ok(listed.entries.some((e) => e.path === "usr/bin/app" && e.mode === 0o100755 && e.size === 18));
    } else {
      assert.equal(a.arch, "amd64", format);
      assert.deepEqual(a.app?.args, ["/usr/bin/app"], format);
    }
  }
});

test("an initramfs-list directory: its entries, /init's architecture, app config", async () => {
  const a = kindOf(await identify(await built("list", ["--format", "initramfs-list"])), "list");
  assert.equal(a.arch, "amd64");
  assert.deepEqual(a.app?.args, ["/usr/bin/app"]);
  assert.ok(a.entries > 3);
});

test("a list whose location points outside its directory is refused, not read", async () => {
  const dir = join(work, "evil-list");
  await mkdir(join(dir, "root"), { recursive: true });
  await writeFile(join(dir, "initramfs_list"), "file /init /etc/passwd 0755 0 0\n");
  await assert.rejects(identify(dir), /location \/etc\/passwd is not a body in root\//);
});

test("Debian's kernel: bzImage, amd64, its config beside it, no app in it", async (t) => {
  const dir = fetchedKernelDir("amd64");
  if (!existsSync(join(dir, "manifest.json")))
    return t.skip(`${dir}: no fetched kernel (slimroot kernel fetch)`);
  const m = await readManifest(dir);
  const a = kindOf(await identify(join(dir, m.kernel)), "kernel");
  assert.equal(a.format, "bzImage");
  assert.equal(a.arch, "amd64");
  assert.equal(a.config, m.config ? join(dir, m.config) : undefined);
  assert.equal(a.embedded, "none");
  const quick = kindOf(await identify(join(dir, m.kernel), { embedded: false }), "kernel");
  assert.equal(quick.embedded, "not looked for");
});

test("a kernel with a slimroot image built in: the app's architecture and config", async () => {
  const cpio = await readFile(await built("embed.cpio", ["--compress", "none", "--platform", "linux/arm64"]));
  // An arm64 Image: "ARM\x64" at 56; the built-in image a gzip stream with a plain header.
  const header = Buffer.alloc(64);
  header.writeUInt32LE(0x644d5241, 56);
  const kernel = join(work, "Image");
  await writeFile(kernel, Buffer.concat([header, Buffer.alloc(1000), gzipSync(cpio), Buffer.alloc(1000)]));
  const a = kindOf(await identify(kernel), "kernel");
  assert.equal(a.format, "arm64-image");
  assert.ok(typeof a.embedded === "object");
  assert.equal(a.embedded.arch, "arm64");
  assert.deepEqual(a.embedded.app?.args, ["/usr/bin/app"]);
  assert.equal(artifactArch(a), "arm64");
});

test("anything else is one line naming the file; a FIFO is never opened", async () => {
  const junk = join(work, "junk");
  await writeFile(junk, "hello, not an image\n");
  await assert.rejects(identify(junk), (err: Error) => {
    assert.ok(err instanceof UserError);
    assert.match(err.message, /^\S*junk: not an image slimroot knows/);
    return true;
  });
  const fifo = join(work, "fifo");
  execFileSync("mkfifo", [fifo]);
  await assert.rejects(identify(fifo), (err: Error) => err instanceof UserError && /fifo/i.test(err.message));
  await assert.rejects(identify(join(work, "missing")), /no such file/);
});

test("inspect reads every kind, and says in one line what it cannot", async () => {
  for (const format of ["ext4", "squashfs", "erofs", "initramfs-list"] as const) {
    const path = await built(`i.${format}`, ["--format", format]);
    const r = await runCli(["inspect", path]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^-rwxr-xr-x 0:0 +18 {2}\/usr\/bin\/app$/m, format);
    assert.match(r.stdout, /^app: \["\/usr\/bin\/app"\]$/m, format);
    const json = JSON.parse((await runCli(["inspect", "--json", path])).stdout);
    assert.equal(json.kind, format === "initramfs-list" ? "list" : "disk");
    assert.equal(json.arch, "amd64");
  }
  // A disk's .why records no image digest: --why says so in one line.
  const why = await runCli(["inspect", "--why", join(work, "i.erofs")]);
  assert.equal(why.code, 1);
  assert.equal(why.stderr.trim().split("\n").length, 1, why.stderr);
});

test("an erofs image's symlinks never lead the reading onto the host's files", async (t) => {
  if (!existsSync("/usr/bin/mkfs.erofs")) return t.skip("mkfs.erofs (erofs-utils) is not installed");
  // /etc/slimroot and /init point at host paths that hold an app config and an ELF.
  const host = join(work, "host-slimroot");
  await mkdir(host, { recursive: true });
  await writeFile(join(host, "app.conf"), "args /host\n");
  const root = join(work, "hostile");
  await mkdir(join(root, "etc"), { recursive: true });
  execFileSync("ln", ["-s", host, join(root, "etc/slimroot")]);
  execFileSync("ln", ["-s", "/bin/true", join(root, "init")]);
  const image = join(work, "hostile.erofs");
  execFileSync("mkfs.erofs", ["--all-root", image, root], { stdio: "ignore" });
  const listed = await diskEntries(image, "erofs");
  assert.ok(typeof listed === "object", String(listed));
  assert.equal(listed.facts?.app, undefined);
  assert.equal(listed.facts?.arch, undefined);
  assert.match(listed.facts?.noArch ?? "", /no \/init on the disk/);
  assert.ok(listed.entries.some((e) => e.path === "etc/slimroot" && e.target === host));
});

test("an erofs image without fsck.erofs on PATH: one line naming the tool and its package", async () => {
  const image = join(work, "d.erofs");
  if (!existsSync(image)) await built("d.erofs", ["--format", "erofs"]);
  const bin = join(work, "bin-without-fsck");
  await mkdir(bin, { recursive: true });
  execFileSync("ln", ["-sf", "/usr/bin/fakeroot", join(bin, "fakeroot")]);
  const saved = process.env.PATH;
  process.env.PATH = bin;
  try {
    assert.equal(
      await diskEntries(image, "erofs"),
      `${image}: no listing (fsck.erofs not found on PATH (apt-get install erofs-utils))`,
    );
  } finally {
    process.env.PATH = saved;
  }
});
