/**
 * `slimroot kernel build` end to end: slimroot's own kernels (amd64 native, arm64 cross-built)
 * boot real images under QEMU (TCG), alone and with the app built in (--embed).
 *
 * Kernel builds take many minutes on 2 cores: they go through the cache (~/.cache/slimroot/
 * kernels), so a warm machine builds nothing. slimroot runs with TMPDIR set to this file's
 * work directory, so its QEMU processes can be recognised and checked to be gone.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { buildKernel } from "../src/kernel/build.js";
import { freePort } from "../src/util/net.js";
import { type CliResult, type RunningCli, runCli, startCli } from "./support/cli.js";
import { busyboxFixture, nginxFixture } from "./support/fixtures.js";
import { qemusUsing } from "./support/qemu.js";

/** A cold cache builds a kernel here: minutes on a loaded 2-core machine. */
const BUILD_TIMEOUT_MS = 90 * 60_000;
const BOOT_TIMEOUT_MS = 240_000;

let work = "";
const env = () => ({ TMPDIR: work });

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-kernel-test-"));
});
after(async () => {
  assert.deepEqual(await qemusUsing(work), [], "QEMU processes left behind");
  await rm(work, { recursive: true, force: true });
});

async function cli(args: string[]): Promise<CliResult> {
  const r = await runCli(args, env());
  assert.deepEqual(await qemusUsing(work), [], `QEMU still running after slimroot ${args[0]}`);
  return r;
}

async function build(name: string, args: string[]): Promise<string> {
  const out = join(work, `${name}.cpio.gz`);
  const r = await cli(["build", "-o", out, ...args]);
  assert.equal(r.code, 0, `build ${name}: ${r.stderr}`);
  return out;
}

/** Polls the forwarded port until the page comes; returns its body ("" if it never did). */
async function fetchPage(vm: RunningCli, port: number): Promise<string> {
  const deadline = Date.now() + 180_000;
  while (Date.now() < deadline && vm.child.exitCode === null) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) });
      if (res.status === 200) return await res.text();
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return "";
}

/** Boots `args` (a `slimroot run` command), fetches the page, stops the VM; returns the body. */
async function serve(args: string[]): Promise<{ body: string; code: number; vm: RunningCli }> {
  const port = await freePort();
  const vm = startCli(["run", ...args.map((a) => a.replace("PORT", String(port)))], env());
  try {
    const body = await fetchPage(vm, port);
    vm.child.kill("SIGTERM");
    const code = await vm.exited;
    assert.deepEqual(await qemusUsing(work), []);
    return { body, code, vm };
  } finally {
    vm.child.kill("SIGKILL");
  }
}

describe("kernel build: configuration", () => {
  test("a fragment's refused line is named before anything is downloaded or compiled", {
    timeout: 120_000,
  }, async () => {
    // An empty cache: a refusal that came after the source download or a compile would
    // leave kernel-src/ or kernels/ in it.
    const cache = join(work, "empty-cache");
    const cases: [string, string, RegExp][] = [
      [
        "no-devtmpfs.config",
        "# CONFIG_DEVTMPFS is not set\n",
        /no-devtmpfs\.config:1: CONFIG_DEVTMPFS=y is required/,
      ],
      [
        "etc.config",
        '# mine\nCONFIG_INITRAMFS_SOURCE="/etc"\n',
        /etc\.config:2: CONFIG_INITRAMFS_SOURCE is slimroot's/,
      ],
      [
        "shell.config",
        'CONFIG_IPV6=y\nCONFIG_CMDLINE="init=/bin/sh"\nCONFIG_CMDLINE_OVERRIDE=y\n',
        /shell\.config:2: CONFIG_CMDLINE is slimroot's/,
      ],
    ];
    for (const [name, text, expected] of cases) {
      const frag = join(work, name);
      await writeFile(frag, text);
      const r = await runCli(["kernel", "build", "--arch", "amd64", "--config-fragment", frag], {
        ...env(),
        SLIMROOT_CACHE: cache,
      });
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stdout, "");
      const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, expected);
      assert.deepEqual(await readdir(cache).catch(() => []), [], `${name}: the cache was touched`);
    }
  });
});

describe("kernel build: amd64", { timeout: BUILD_TIMEOUT_MS + 10 * BOOT_TIMEOUT_MS }, () => {
  let kernelDir = "";
  let busybox = "";
  let busyboxRef = "";
  before(async () => {
    const k = await buildKernel({ arch: "amd64" });
    kernelDir = k.dir;
    busyboxRef = (await busyboxFixture("amd64")).ociRef;
    busybox = await build("busybox", [busyboxRef, "--", "sh", "-c", "echo cpus=$(nproc); exit 7"]);
  });

  test("the directory has a bzImage, an ELF vmlinux, its config and a manifest", async () => {
    const m = JSON.parse(await readFile(join(kernelDir, "manifest.json"), "utf8"));
    assert.equal(m.arch, "amd64");
    assert.deepEqual(m.modules, []);
    assert.match(m.source, /linux-source-6\.1/);
    const head = await readFile(join(kernelDir, m.vmlinux));
    assert.equal(head.toString("latin1", 1, 4), "ELF");
    const config = await readFile(join(kernelDir, m.config), "utf8");
    for (const opt of [
      "VIRTIO_MMIO_CMDLINE_DEVICES",
      "DEVTMPFS",
      "FANOTIFY",
      "PVH",
      "SMP",
      "IPV6",
      "EROFS_FS",
    ])
      assert.match(config, new RegExp(`^CONFIG_${opt}=y$`, "m"), opt);
    assert.doesNotMatch(config, /^CONFIG_MODULES=y$/m);
    assert.match(config, /^CONFIG_PHYSICAL_START=0x200000$/m);
  });

  test("memset and memcpy are calls, not inline rep strings (KCFLAGS): free_initmem poisons through the kernel's memset", () => {
    const vmlinux = join(kernelDir, "vmlinux");
    // At -Os alone gcc inlines 4,616 of them; what is left is hand-written assembly.
    const reps = Number(
      execFileSync("sh", ["-c", 'objdump -d "$1" | grep -cE "rep (stos|movs)"', "sh", vmlinux]).toString(),
    );
    assert.ok(reps < 200, `${reps} rep string instructions`);
    const body = execFileSync("objdump", ["-d", "--disassemble=free_reserved_area", vmlinux]).toString();
    assert.match(body, /call\s+\S+ <_?_?memset>/);
    assert.doesNotMatch(body, /rep stos/);
  });

  test("microvm runs it without ACPI: the devices come on the command line; its vmlinux boots, nothing to decompress", async () => {
    const r = await cli(["run", "--dry-run", "--kernel", kernelDir, busybox]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /-M microvm,acpi=off /);
    assert.match(r.stdout, / -kernel \S+\/vmlinux /);
    assert.match(r.stdout, / noapictimer no_timer_check noreplace-smp 8250\.nr_uarts=1/);
    const scratch = /kept in (\S+)/.exec(r.stderr)?.[1];
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  test("--cpus 2: the guest sees two CPUs, and the exit code comes back", async () => {
    const r = await cli(["run", "--kernel", kernelDir, "--cpus", "2", busybox]);
    assert.equal(r.code, 7, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    assert.match(r.stdout, /cpus=2/);
    assert.match(r.stdout, /SLIMROOT_EXIT=7/);
  });

  test("nginx (--minimize static) serves through a forwarded port on microvm", async () => {
    const nginx = await build("nginx-static", [
      (await nginxFixture()).ociRef,
      "--minimize",
      "static",
      "--keep",
      "/var/www/html/**",
    ]);
    const { body, code, vm } = await serve([nginx, "--kernel", kernelDir, "-p", "PORT:80"]);
    assert.match(body, /Welcome to nginx/, `stdout:\n${vm.stdout}\nstderr:\n${vm.stderr}`);
    assert.equal(code, 0, vm.stderr);
  });

  test("slimroot trace works on it (fanotify is built in)", async () => {
    const profile = join(work, "busybox.profile");
    const r = await cli([
      "trace",
      busyboxRef,
      "--kernel",
      kernelDir,
      "-o",
      profile,
      "--",
      "sh",
      "-c",
      "cat /etc/os-release >/dev/null",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(await readFile(profile, "utf8"), /etc\/os-release/);
  });

  test("--embed: one file boots with no image initrd; ports, env, --volume and the exit code work as with an initramfs", async () => {
    const app = await build("greet", [
      busyboxRef,
      "--",
      "sh",
      "-c",
      'echo "greeting=$GREETING"; cat /data/note 2>/dev/null && echo written > /data/new; exit 3',
    ]);
    const kernelFile = join(work, "greet.vmlinuz");
    const e = await cli(["kernel", "build", "--embed", app, "-o", kernelFile]);
    assert.equal(e.code, 0, e.stderr);
    assert.ok((await stat(kernelFile)).size > 0);
    const dry = await cli(["run", "--dry-run", kernelFile]);
    assert.equal(dry.code, 0, dry.stderr);
    // The app needs no initrd; run's holds only the boot's report key (init/README.md).
    const keyInitrd = /-initrd (\S+)/.exec(dry.stdout)?.[1];
    assert.ok(keyInitrd && (await stat(keyInitrd)).size < 1024, dry.stdout);
    const r = await cli(["run", kernelFile, "-e", "GREETING=hello there"]);
    assert.equal(r.code, 3, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    assert.match(r.stdout, /greeting=hello there/);
    assert.match(r.stdout, /SLIMROOT_EXIT=3/);
    // --volume: mounted by the init (its record in run.conf, in the small initrd), read and written.
    const volume = join(work, "embed-data.ext4");
    const seed = join(work, "embed-data");
    await mkdir(seed, { recursive: true });
    await writeFile(join(seed, "note"), "from the volume\n");
    execFileSync("mke2fs", ["-q", "-F", "-t", "ext4", "-d", seed, volume, "8M"]);
    const v = await cli(["run", kernelFile, "--volume", `${volume}:/data`]);
    assert.equal(v.code, 3, `stdout:\n${v.stdout}\nstderr:\n${v.stderr}`);
    assert.match(v.stdout, /^from the volume\r?$/m);
    assert.match(
      execFileSync("debugfs", ["-R", "cat /new", volume], { stdio: "pipe" }).toString(),
      /^written$/m,
    );
    // Far below its need: refused before booting by the measured rule (vm/memory.ts), or, when
    // the rule lets it through, the kernel's panic (or its silence) becomes one line naming the memory.
    const low = await cli(["run", kernelFile, "--mem", "20"]);
    assert.equal(low.code, 125, `stdout:\n${low.stdout}\nstderr:\n${low.stderr}`);
    assert.match(
      low.stderr,
      /^slimroot: (--mem 20: .* needs at least \d+ MiB of guest memory|the VM ended without an exit report from the init: (the built-in initramfs did not fit in 20 MiB|the kernel stopped before its first console line in 20 MiB).*give --mem \d+)/m,
    );

    const nginx = await build("nginx-embed", [
      (await nginxFixture()).ociRef,
      "--minimize",
      "static",
      "--keep",
      "/var/www/html/**",
    ]);
    const nginxKernel = join(work, "nginx.vmlinuz");
    const n = await cli(["kernel", "build", "--embed", nginx, "-o", nginxKernel]);
    assert.equal(n.code, 0, n.stderr);
    const { body, code, vm } = await serve([nginxKernel, "-p", "PORT:80"]);
    assert.match(body, /Welcome to nginx/, `stdout:\n${vm.stdout}\nstderr:\n${vm.stderr}`);
    assert.equal(code, 0, vm.stderr);
  });
});

describe("kernel build: arm64 (cross-built)", { timeout: BUILD_TIMEOUT_MS + 2 * BOOT_TIMEOUT_MS }, () => {
  let kernelDir = "";
  before(async () => {
    kernelDir = (await buildKernel({ arch: "arm64" })).dir;
  });

  test("boots the busybox image on qemu-system-aarch64 and returns its exit code", async () => {
    const image = await build("busybox-arm64", [
      (await busyboxFixture("arm64")).ociRef,
      "--",
      "sh",
      "-c",
      "echo arch=$(uname -m); exit 5",
    ]);
    const r = await cli(["run", "--kernel", kernelDir, image]);
    assert.equal(r.code, 5, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    assert.match(r.stdout, /arch=aarch64/);
  });
});
