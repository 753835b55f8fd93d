/**
 * `run` of a kernel file (issue 17 item 8), without booting (`--dry-run`): only a kernel with a
 * slimroot app built in boots alone (a distribution's vmlinuz is refused, saying what to do),
 * its memory is sized from the built-in image as for an initramfs, --volume reaches the init in
 * run.conf (in an initrd of its own, which the kernel unpacks over its built-in one), and
 * --read-only is refused (the image is in RAM).
 *
 * The "kernel" here is an ELF header with a newc archive inside, uncompressed (the shape
 * `kernel build --embed` leaves in a vmlinux) or gzip (what it left before): the run path
 * reads no more of a kernel than that.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";
import { APP_CONFIG_PATH, encodeAppConfig } from "../src/appconfig/appconfig.js";
import { identify } from "../src/artifact/identify.js";
import { S_IFREG } from "../src/cpio/newc.js";
import { writeRecords } from "../src/cpio/writer.js";
import { fetchKernel } from "../src/kernel/fetch.js";
import { hostExecutable } from "../src/util/host-path.js";
import { runCli } from "./support/cli.js";

let work = "";
const env = () => ({ TMPDIR: work });

/** A vmlinux-shaped file: an x86-64 ELF header, then `inside`, then padding. */
async function fakeKernel(name: string, inside: Buffer): Promise<string> {
  const elf = (await readFile("/bin/busybox")).subarray(0, 64);
  const file = join(work, name);
  await writeFile(file, Buffer.concat([elf, Buffer.alloc(4096), inside, Buffer.alloc(4096)]));
  return file;
}

/** A slimroot-like image: /init (an x86-64 ELF) and `bytes` of app data; with `args`, an app.conf running them. */
async function appCpio(bytes: number, args?: string[]): Promise<Buffer> {
  const init = (await readFile("/bin/busybox")).subarray(0, 4096);
  const file = (name: string, mode: number, body: Buffer) => ({
    name,
    mode: S_IFREG | mode,
    uid: 0,
    gid: 0,
    mtime: 0,
    body,
  });
  const conf = args && { args, env: [], workdir: "/", uid: 0, gid: 0, groups: [], ports: [] };
  return buffer(
    writeRecords([
      ...(conf ? [file(APP_CONFIG_PATH, 0o644, Buffer.from(encodeAppConfig(conf)))] : []),
      file("init", 0o755, init),
      file("app", 0o644, Buffer.alloc(bytes, 0x5a)),
    ]),
  );
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-embed-run-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const memOf = (cmd: string) => Number(/ -m (\d+) /.exec(cmd)?.[1]);

test("a kernel with no app built in is refused before booting, saying what to do", {
  timeout: 180_000,
}, async () => {
  const debian = await fetchKernel({ arch: "amd64" });
  const vmlinuz = join(debian.dir, debian.manifest.kernel);
  const r = await runCli(["run", vmlinuz, "--dry-run"], env());
  assert.equal(r.code, 125, r.stderr);
  assert.match(r.stderr, /a kernel with no slimroot app built in .*slimroot run IMAGE --kernel /);
  const bare = await runCli(
    ["run", await fakeKernel("bare", gzipSync(Buffer.from("not a cpio"))), "--dry-run"],
    env(),
  );
  assert.equal(bare.code, 125, bare.stderr);
  assert.match(bare.stderr, /no slimroot app built in/);
});

test("the memory follows the built-in image, and a --mem below its need is refused", {
  timeout: 180_000,
}, async () => {
  const small = await fakeKernel("small", gzipSync(await appCpio(1 << 20)));
  const big = await fakeKernel("big", gzipSync(await appCpio(150 << 20)));
  const s = await runCli(["run", small, "--dry-run"], env());
  assert.equal(s.code, 0, s.stderr);
  const b = await runCli(["run", big, "--dry-run"], env());
  assert.equal(b.code, 0, b.stderr);
  // Before, both got a flat 256 MiB; 150 MiB of files need about twice that.
  assert.equal(memOf(s.stdout), 256);
  assert.ok(memOf(b.stdout) > 300, b.stdout);
  const low = await runCli(["run", big, "--dry-run", "--mem", "256"], env());
  assert.notEqual(low.code, 0);
  assert.match(low.stderr, /--mem 256: .*big needs at least \d+ MiB/);
});

test("an uncompressed built-in archive (what --embed makes) is found past a stray magic, and its bytes count as held", {
  timeout: 180_000,
}, async () => {
  // The kernel's unpacker compares headers with the string "070701": a match that is no archive.
  const decoy = Buffer.from("070701\0no cpio here");
  const plain = await fakeKernel("plain", Buffer.concat([decoy, await appCpio(150 << 20)]));
  const gz = await fakeKernel("gz", gzipSync(await appCpio(150 << 20)));
  const p = await runCli(["run", plain, "--dry-run"], env());
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stderr, /^slimroot: plan: kernel: .*plain \(the app built in\)$/m);
  assert.match(p.stderr, /^slimroot: plan: initrd: run\.conf /m);
  const g = await runCli(["run", gz, "--dry-run"], env());
  assert.equal(g.code, 0, g.stderr);
  // The same files; the plain archive stays in RAM whole (150 MiB) until unpacked, the gzip one compressed.
  assert.ok(memOf(p.stdout) > memOf(g.stdout), `${p.stdout}\n${g.stdout}`);
});

test("--volume reaches the init in run.conf, in an initrd of its own; --read-only is refused", {
  timeout: 180_000,
}, async () => {
  const kernel = await fakeKernel("app", gzipSync(await appCpio(1024)));
  // An ext4 superblock is all `run` reads of a volume before booting.
  const disk = Buffer.alloc(1 << 20);
  disk.writeUInt16LE(0xef53, 1024 + 0x38);
  disk.fill(7, 1024 + 0x68, 1024 + 0x78);
  await writeFile(join(work, "data.ext4"), disk);
  const out = join(work, "dry");
  const r = await runCli(
    ["run", kernel, "--dry-run", "-o", out, "--volume", `${join(work, "data.ext4")}:/data:ro`],
    env(),
  );
  assert.equal(r.code, 0, r.stderr);
  // The run settings are not on the command line, where the app could read them.
  assert.doesNotMatch(r.stdout, /slimroot\.conf=/);
  assert.match(
    (await readFile(join(out, "initrd"))).toString("latin1"),
    /^volume ext4 1128 (07){16} ro \/data$/m,
  );
  assert.match(r.stdout, /data\.ext4/);
  assert.match(r.stderr, /^slimroot: plan: kernel: .*app \(the app built in\)$/m);
  const ro = await runCli(["run", kernel, "--dry-run", "--read-only"], env());
  assert.equal(ro.code, 125);
  assert.match(ro.stderr, /^slimroot: --read-only: for an ext4 root \(.*app is a kernel with its app in RAM/);
});

/**
 * An x86-64 ELF laid out as a vmlinux with `archive` built in (gcc, as the kernel's
 * usr/initramfs_data.S and INIT_RAM_FS place it): `__initramfs_start` in .init.data and
 * `__initramfs_size` after it; `decoy`, another whole archive, in .rodata, earlier in the file.
 */
async function elfKernel(name: string, archive: Buffer, decoy: Buffer): Promise<string> {
  const files = { archive: join(work, `${name}.cpio`), decoy: join(work, `${name}.decoy`) };
  await writeFile(files.archive, archive);
  await writeFile(files.decoy, decoy);
  const asm = join(work, `${name}.S`);
  await writeFile(
    asm,
    [
      ".section .rodata",
      `.incbin "${files.decoy}"`,
      '.section .init.data,"aw"',
      ".balign 4",
      ".globl __initramfs_start",
      "__initramfs_start:",
      `.incbin "${files.archive}"`,
      "__irf_end:",
      ".balign 8",
      ".globl __initramfs_size",
      "__initramfs_size: .quad __irf_end - __initramfs_start",
      ".text",
      ".globl _start",
      "_start: jmp _start",
      "",
    ].join("\n"),
  );
  const out = join(work, name);
  execFileSync("gcc", ["-nostdlib", "-static", "-no-pie", "-o", out, asm]);
  return out;
}

test("an ELF kernel's archive is the one its symbols place (__initramfs_start, __initramfs_size), not the first in the file; cut short, it is one line", {
  timeout: 180_000,
  skip: hostExecutable("gcc") ? false : "gcc is needed to lay out an ELF kernel (apt-get install gcc)",
}, async () => {
  const kernel = await elfKernel(
    "vmlinux-syms",
    await appCpio(150 << 20, ["/usr/bin/app"]),
    await appCpio(1024, ["/decoy"]),
  );
  const a = await identify(kernel);
  assert.ok(a.kind === "kernel" && typeof a.embedded === "object", JSON.stringify(a));
  assert.deepEqual(a.embedded.app?.args, ["/usr/bin/app"]);
  // The memory is the 150 MiB archive's (held in RAM whole, then unpacked), not the decoy's.
  const r = await runCli(["run", kernel, "--dry-run"], env());
  assert.equal(r.code, 0, r.stderr);
  assert.ok(memOf(r.stdout) > 450, r.stdout);
  // Cut inside the archive (its section headers, at the file's end, go too): one line.
  const cutShort = await elfKernel("vmlinux-cut", await appCpio(1 << 20, ["/usr/bin/app"]), Buffer.alloc(0));
  await truncate(cutShort, 512 << 10);
  const cut = await runCli(["run", cutShort, "--dry-run"], env());
  assert.equal(cut.code, 125, cut.stderr);
  assert.match(cut.stderr, /^slimroot: \S*vmlinux-cut: a kernel with no slimroot app built in [^\n]*\n$/);
});
