/**
 * `slimroot run` end to end: images built by `slimroot build` from the Debian fixtures, booted
 * for real under QEMU (TCG) with Debian's cloud kernels from `slimroot kernel fetch`.
 *
 * Slow (each boot is 2-4 s of emulation; nginx's ~25 MB image nearer 7 s) and needs apt,
 * QEMU and the guest init (make -C init). Images are built once per file and reused.
 * slimroot runs with TMPDIR set to this file's work directory, so its QEMU processes can
 * be recognised (their -initrd lives there) and checked to be gone after each run.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { copyFile, cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { fetchKernel } from "../src/kernel/fetch.js";
import { freePort } from "../src/util/net.js";
import { runImage } from "../src/vm/run.js";
import { type CliResult, runCli, startCli } from "./support/cli.js";
import { busyboxFixture, nginxFixture } from "./support/fixtures.js";
import { buildTestModule } from "./support/kernel.js";
import { qemusUsing } from "./support/qemu.js";

const TEST_TIMEOUT_MS = 180_000;

let work = "";
const env = () => ({ TMPDIR: work });

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-run-test-"));
  await mkdir(join(work, "images"));
});
after(async () => {
  assert.deepEqual(await qemusUsing(work), [], "QEMU processes left behind");
  await rm(work, { recursive: true, force: true });
});

async function build(name: string, args: string[], suffix = ".cpio.gz"): Promise<string> {
  const out = join(work, "images", `${name}${suffix}`);
  const r = await runCli(["build", "-o", out, ...args], env());
  assert.equal(r.code, 0, `build ${name}: ${r.stderr}`);
  return out;
}

async function run(args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> {
  const r = await runCli(["run", ...args], { ...env(), ...extraEnv });
  assert.deepEqual(await qemusUsing(work), [], "QEMU still running after slimroot run ended");
  return r;
}

/** A failed launch: exit 125, exactly one line on stderr, nothing on stdout, no QEMU. */
function assertLaunchFailure(r: CliResult, message: RegExp): void {
  assert.equal(r.code, 125, `stderr: ${r.stderr}\nstdout: ${r.stdout}`);
  assert.equal(r.stdout, "");
  const lines = r.stderr.split("\n").filter(Boolean);
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, message);
}

describe("slimroot run: busybox on amd64 (microvm)", { timeout: 10 * TEST_TIMEOUT_MS }, () => {
  let image = "";
  let configured = "";
  let amd64Dir = "";
  let amd64Kernel = "";
  before(async () => {
    const k = await fetchKernel({ arch: "amd64" });
    amd64Dir = k.dir;
    amd64Kernel = join(k.dir, k.manifest.kernel);
    const fx = await busyboxFixture("amd64");
    image = await build("busybox", [fx.ociRef, "--", "sh", "-c", "echo default command"]);
    configured = await build("busybox-config", [
      fx.ociRef,
      "-e",
      "GREETING=hello",
      "-w",
      "/srv/app",
      "-u",
      "1234:5678",
      "--",
      "sh",
      "-c",
      'echo "cfg $GREETING $RUNTIME $(pwd) $(id -u):$(id -g)"',
    ]);
  });

  test("the app's exit status is ours, whatever report the app prints itself", async () => {
    // The app shares the console: its look-alike of the init's report must not count.
    const r = await run([image, "--", "sh", "-c", "echo bye; echo SLIMROOT_EXIT=0; exit 7"]);
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stdout, /^bye$/m);
    assert.match(r.stdout, /^SLIMROOT_REPORT [0-9a-f]{32}$/m);
    assert.match(r.stdout, /^SLIMROOT_EXIT=7$/m);
    assert.ok(!r.stdout.includes("\r"), "CRLF from the serial console is turned into LF");
  });

  test("the image's own command runs when none is given (on -M pc, virtio-pci)", async () => {
    const r = await run([image], { SLIMROOT_MACHINE: "pc" });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^default command$/m);
  });

  test("an app killed by a signal: 128 + its number (--kernel FILE --modules DIR)", async () => {
    const r = await run([
      image,
      "--kernel",
      amd64Kernel,
      "--modules",
      join(amd64Dir, "modules"),
      "--",
      "sh",
      "-c",
      "kill -9 $$",
    ]);
    assert.equal(r.code, 137, r.stderr);
  });

  test("Env, WorkingDir and User from the image config, -e from run (--kernel DIR, --timeline)", async () => {
    const r = await run([configured, "--kernel", amd64Dir, "-e", "RUNTIME=yes", "--timeline"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^cfg hello yes \/srv\/app 1234:5678$/m);
    // The timeline: contiguous segments from the VMM's start, summing to the total, initcalls named.
    const segments = [...r.stderr.matchAll(/^slimroot: +at +(\d+) ms +(\d+) ms {2}(.*)$/gm)];
    assert.ok(segments.length >= 6, r.stderr);
    let at = 0;
    for (const [, start, ms] of segments) {
      assert.ok(Math.abs(Number(start) - at) <= 1, `segments in order: ${r.stderr}`);
      at = Number(start) + Number(ms);
    }
    const total = Number(/total (\d+) ms .*segments sum to (\d+) ms/.exec(r.stderr)?.[1]);
    assert.ok(Math.abs(at - total) <= segments.length, `sum ${at} vs total ${total}: ${r.stderr}`);
    assert.match(segments.at(-2)![3]!, /^the app, until it exited/);
    assert.match(r.stderr, /slowest initcalls \(the kernel's own times\): [a-z_]\w* \d+\.\d ms/);
  });

  test("--timeline names a slow module's init among the slowest initcalls, with its time", async (t) => {
    const { version } = (await fetchKernel({ arch: "amd64" })).manifest;
    const mod = await buildTestModule(
      await mkdtemp(join(work, "slow-")),
      version,
      "slowpoke",
      "msleep(1500);",
    );
    if ("missing" in mod) {
      t.skip(mod.missing);
      return;
    }
    // The kernel's own modules (virtio-net for eth0) and the slow one.
    const modules = await mkdtemp(join(work, "modules-"));
    await cp(join(amd64Dir, "modules"), modules, { recursive: true });
    await copyFile(mod.ko, join(modules, "slowpoke.ko"));
    const r = await run([image, "--kernel", amd64Kernel, "--modules", modules, "--timeline", "--", "true"]);
    assert.equal(r.code, 0, r.stderr);
    const slowest = /slowest initcalls \(the kernel's own times\): (.*)$/m.exec(r.stderr)?.[1] ?? "";
    const m = /(?:^|, )slowpoke_init \[slowpoke\] (\d+\.\d) ms/.exec(slowest);
    assert.ok(m, `slowpoke_init among the slowest initcalls: ${r.stderr}`);
    // msleep(1500) sleeps at least 1.5 s: the kernel's own measure of it, not a speed target.
    assert.ok(Number(m[1]) >= 1000, `slowpoke_init took ${m[1]} ms: ${r.stderr}`);
  });

  test("a missing entrypoint: 127 and the init's line", async () => {
    const r = await run([image, "--", "/no/such/app"]);
    assert.equal(r.code, 127, r.stderr);
    assert.match(r.stdout, /^slimroot-init: \/no\/such\/app: not found$/m);
  });

  test("--timeout stops the VM and exits 124", async () => {
    const started = Date.now();
    const r = await run([image, "--timeout", "2s", "--", "sleep", "600"]);
    assert.equal(r.code, 124, r.stderr);
    assert.match(r.stderr, /timed out after 2 s/);
    assert.ok(Date.now() - started < 30_000);
  });

  for (const [kind, suffix] of [
    ["zstd", ".cpio.zst"],
    ["xz", ".cpio.xz"],
    ["lz4", ".cpio.lz4"],
  ] as const) {
    test(`a ${kind} image boots (the kernel unpacks it)`, async () => {
      const fx = await busyboxFixture("amd64");
      const img = await build(
        `busybox-${kind}`,
        [fx.ociRef, "--", "sh", "-c", `echo unpacked ${kind}`],
        suffix,
      );
      const r = await run([img]);
      assert.equal(r.code, 0, `${r.stderr}\n${r.stdout.slice(-2000)}`);
      assert.match(r.stdout, new RegExp(`^unpacked ${kind}$`, "m"));
    });

    // --layers joins one compressed stream per part: the kernel must unpack each after the
    // one before (lz4's legacy frames and xz's streams end differently from gzip's members).
    test(`a ${kind} image built --layers boots (the kernel unpacks its parts one after another)`, async () => {
      const fx = await busyboxFixture("amd64");
      const img = await build(
        `busybox-layers-${kind}`,
        [fx.ociRef, "--layers", "--", "sh", "-c", `echo unpacked layers ${kind}`],
        suffix,
      );
      const parts = JSON.parse((await readFile(`${img}.why`, "utf8")).split("\n")[0]!).parts;
      assert.ok(parts.length >= 2, `several parts: ${JSON.stringify(parts)}`);
      const r = await run([img]);
      assert.equal(r.code, 0, `${r.stderr}\n${r.stdout.slice(-2000)}`);
      assert.match(r.stdout, new RegExp(`^unpacked layers ${kind}$`, "m"));
    });
  }

  test("the library leaves process signal listeners alone and stops on its AbortSignal", async () => {
    const marker = () => {};
    process.on("SIGHUP", marker);
    const before = ["SIGINT", "SIGTERM", "SIGHUP"].map((s) => process.listeners(s as NodeJS.Signals));
    let out = "";
    const sink = (into: (t: string) => void) =>
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          into(chunk.toString());
          cb();
        },
      });
    const stop = new AbortController();
    const kill = new AbortController();
    let running: Promise<number> | undefined;
    const prevTmp = process.env.TMPDIR;
    process.env.TMPDIR = work; // so qemusUsing(work) sees this QEMU too
    try {
      running = runImage({
        image,
        forwards: [],
        cpus: 1,
        env: [],
        args: ["sh", "-c", "echo app ready; exec sleep 600"],
        stopGraceMs: 20_000,
        dryRun: false,
        stop: stop.signal,
        kill: kill.signal,
        stdout: sink((t) => {
          out += t;
        }),
        stderr: sink(() => {}),
      });
      const deadline = Date.now() + 120_000;
      while (!out.includes("app ready") && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      assert.match(out, /app ready/);
      const during = ["SIGINT", "SIGTERM", "SIGHUP"].map((s) => process.listeners(s as NodeJS.Signals));
      assert.deepEqual(during, before, "runImage changed the process's signal listeners");
      stop.abort(143);
      assert.equal(await running, 143, out);
    } finally {
      kill.abort();
      await running?.catch(() => undefined);
      process.off("SIGHUP", marker);
      if (prevTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = prevTmp;
    }
  });

  test("--dry-run prints the QEMU command line and starts nothing", async () => {
    const r = await run([image, "--dry-run", "-p", "8080:80"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^qemu-system-x86_64 -M (microvm,acpi=on|pc) .*-netdev user,id=n0,hostfwd=tcp:127\.0\.0\.1:8080-:80 /,
    );
    assert.equal(r.stdout.trim().split("\n").length, 1);
  });

  test("--probe: a bad one, an empty one, one with --dry-run or Firecracker: one line, 125, nothing started", async () => {
    assertLaunchFailure(
      await run([image, "--probe", "ftp:21"]),
      /^slimroot: --probe ftp:21: expected http:PORT/,
    );
    assertLaunchFailure(await run([image, "--probe", ""]), /^slimroot: --probe : expected http:PORT/);
    assertLaunchFailure(
      await run([image, "--probe", "http:"]),
      /^slimroot: --probe http:: expected a port number/,
    );
    assertLaunchFailure(
      await run([image, "--vmm", "firecracker", "--probe", "http:80/"]),
      /^slimroot: --probe: not with --vmm firecracker/,
    );
    assertLaunchFailure(
      await run([image, "--probe", "http:80/", "--dry-run"]),
      /^slimroot: --probe http:80\/: not with --dry-run$/,
    );
  });

  test("--probe that never passes: the app's status stays its own, and run says the probe did not pass, also on --timeout", async () => {
    const exits = await run([image, "--probe", "http:80/", "--", "sh", "-c", "exit 3"]);
    assert.equal(exits.code, 3, exits.stderr);
    assert.match(exits.stderr, /^slimroot: --probe http:80\/: the VM ended before it passed \(last: \w+/m);
    assert.doesNotMatch(exits.stderr, /ready:/);
    const slow = await run([image, "--probe", "http:80/", "--timeout", "3s", "--", "sleep", "60"]);
    assert.equal(slow.code, 124, slow.stderr);
    assert.match(slow.stderr, /^slimroot: --probe http:80\/: the VM ended before it passed/m);
    assert.match(slow.stderr, /^slimroot: timed out after 3 s; VM stopped$/m);
  });

  test("bad launch: a kernel file that does not exist", async () => {
    assertLaunchFailure(await run([image, "--kernel", join(work, "no-vmlinuz")]), /no-vmlinuz: no such file/);
  });

  // A kernel of the wrong architecture: refused by the plan (src/vm/plan.test.ts).

  test("bad launch: no kernel fetched", async () => {
    const r = await run([image], { SLIMROOT_CACHE: join(work, "empty-cache") });
    assertLaunchFailure(r, /run slimroot kernel fetch --arch amd64/);
  });

  test("bad launch: a host port already in use", async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen({ host: "127.0.0.1", port: 0 }, r));
    const { port } = server.address() as { port: number };
    try {
      const r = await run([image, "--kernel", amd64Kernel, "-p", `${port}:80`]);
      assertLaunchFailure(r, new RegExp(`host port 127\\.0\\.0\\.1:${port}/tcp is already in use`));
    } finally {
      server.close();
    }
  });
});

describe("slimroot run: nginx", { timeout: 3 * TEST_TIMEOUT_MS }, () => {
  let image = "";
  before(async () => {
    await fetchKernel({ arch: "amd64" });
    image = await build("nginx", [(await nginxFixture()).ociRef]);
  });

  test("serves its welcome page on a forwarded port, says when it was ready (--probe, --timeline), and SIGTERM stops it with status 0", async () => {
    const port = await freePort();
    const vm = startCli(["run", image, "-p", `${port}:80`, "--probe", "http:80/", "--timeline"], env());
    const { child, exited } = vm;
    try {
      // run says when its probe passed, on the forward the user gave (-p), and the page is there.
      const ready =
        /^slimroot: ready: http:80\/ passed (\d+\.\d\d) s after slimroot started \((\d+\.\d\d) s after the VMM was spawned\)$/m;
      const deadline = Date.now() + 120_000;
      while (Date.now() < deadline && child.exitCode === null && !ready.test(vm.stderr))
        await new Promise((r) => setTimeout(r, 50));
      const m = ready.exec(vm.stderr);
      assert.ok(m, `no ready line; stderr:\n${vm.stderr}`);
      assert.ok(Number(m[1]) > Number(m[2]), vm.stderr);
      let body = "";
      const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(10_000) });
      if (res.status === 200) body = await res.text();
      assert.match(body, /Welcome to nginx/, `no welcome page; stdout:\n${vm.stdout}\nstderr:\n${vm.stderr}`);

      const stopping = Date.now();
      child.kill("SIGTERM");
      const code = await exited;
      assert.equal(code, 0, `stdout:\n${vm.stdout}\nstderr:\n${vm.stderr}`);
      assert.ok(Date.now() - stopping < 10_000, `stopping took ${Date.now() - stopping} ms`);
      assert.deepEqual(await qemusUsing(work), []);
      // The timeline, printed once it stopped: the app's time cut where the probe passed.
      const segments = [...vm.stderr.matchAll(/^slimroot: +at +(\d+) ms +(\d+) ms {2}(.*)$/gm)].map(
        (x) => x[3],
      );
      const probe = segments.findIndex((w) => w!.startsWith("the app, until the probe first passed"));
      assert.ok(probe > 0, vm.stderr);
      assert.match(segments[probe + 1]!, /^the app, serving, until it exited/);
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("slimroot run: stopping", { timeout: TEST_TIMEOUT_MS }, () => {
  test("SIGTERM to slimroot run reaches the app as SIGTERM, and its exit status is ours", async () => {
    await fetchKernel({ arch: "amd64" });
    const image = await build("trap", [
      (await busyboxFixture("amd64")).ociRef,
      "--",
      "sh",
      "-c",
      'trap "echo app got TERM; exit 3" TERM; trap "echo app got INT; exit 4" INT; echo app ready; while :; do sleep 1; done',
    ]);
    const vm = startCli(["run", image], env());
    const { child, exited } = vm;
    try {
      const deadline = Date.now() + 120_000;
      while (!vm.stdout.includes("app ready") && Date.now() < deadline && child.exitCode === null) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(vm.stdout, /app ready/);
      child.kill("SIGTERM");
      assert.equal(await exited, 3, vm.stdout);
      assert.match(vm.stdout, /app got TERM/);
      assert.deepEqual(await qemusUsing(work), []);
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("slimroot run: a 160 MiB image (the initramfs lives in guest RAM)", {
  timeout: 3 * TEST_TIMEOUT_MS,
}, () => {
  let image = "";
  before(async () => {
    await fetchKernel({ arch: "amd64" });
    // Random bytes: gzip cannot shrink them, so the initrd is as large as its files.
    const big = join(work, "big-files");
    await mkdir(big);
    for (let i = 0; i < 160; i++) await writeFile(join(big, `r${i}.bin`), randomBytes(1 << 20));
    image = await build("big", [
      (await busyboxFixture("amd64")).ociRef,
      "--add",
      `${big}:/big`,
      "--",
      "sh",
      "-c",
      'echo "files $(ls /big | wc -l)"; head -c 20000000 /dev/zero > /big-written && echo wrote',
    ]);
    await rm(big, { recursive: true });
  });

  test("boots with the default memory, sized from the image, and the app can write to /", async () => {
    const r = await run([image]);
    assert.equal(r.code, 0, `${r.stderr}\n${r.stdout.slice(-2000)}`);
    assert.match(r.stdout, /^files 160$/m);
    assert.match(r.stdout, /^wrote$/m);
  });

  test("--mem too small for the image: refused before booting, naming the memory needed", async () => {
    assertLaunchFailure(
      await run([image, "--mem", "256"]),
      /^slimroot: --mem 256: .*big\.cpio\.gz needs at least \d+ MiB of guest memory/,
    );
  });
});

describe("slimroot run: killed with SIGKILL", { timeout: TEST_TIMEOUT_MS }, () => {
  test("QEMU dies with it (parent-death signal)", async () => {
    await fetchKernel({ arch: "amd64" });
    const image = await build("sleeper", [
      (await busyboxFixture("amd64")).ociRef,
      "--",
      "sh",
      "-c",
      "echo app ready; exec sleep 600",
    ]);
    const vm = startCli(["run", image], env());
    const { child, exited } = vm;
    let qemus: number[] = [];
    try {
      const deadline = Date.now() + 120_000;
      while (!vm.stdout.includes("app ready") && Date.now() < deadline && child.exitCode === null) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(vm.stdout, /app ready/, vm.stderr);
      qemus = await qemusUsing(work);
      assert.equal(qemus.length, 1, "one QEMU while the app runs");
      child.kill("SIGKILL");
      await exited;
      const gone = Date.now() + 20_000;
      while ((await qemusUsing(work)).length && Date.now() < gone)
        await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(await qemusUsing(work), [], "QEMU outlived slimroot run killed with SIGKILL");
    } finally {
      child.kill("SIGKILL");
      for (const pid of qemus) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
  });
});

describe("slimroot run: --stop-timeout expires", { timeout: 3 * TEST_TIMEOUT_MS }, () => {
  let image = "";
  before(async () => {
    await fetchKernel({ arch: "amd64" });
    image = await build("deaf", [
      (await busyboxFixture("amd64")).ociRef,
      "--",
      "sh",
      "-c",
      'trap "echo ignoring TERM" TERM; echo app ready; while :; do sleep 1; done',
    ]);
  });

  test("an app that ignores SIGTERM is killed after --stop-timeout: 137", async () => {
    const vm = startCli(["run", image, "--stop-timeout", "3s"], env());
    const { child, exited } = vm;
    try {
      const deadline = Date.now() + 120_000;
      while (!vm.stdout.includes("app ready") && Date.now() < deadline && child.exitCode === null) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.match(vm.stdout, /app ready/, vm.stderr);
      child.kill("SIGTERM");
      assert.equal(await exited, 137, `stdout:\n${vm.stdout}\nstderr:\n${vm.stderr}`);
      assert.match(vm.stdout, /ignoring TERM/);
      assert.match(vm.stderr, /the app did not stop within 3 s; VM killed/);
      assert.deepEqual(await qemusUsing(work), []);
    } finally {
      child.kill("SIGKILL");
    }
  });

  test("after --timeout too: 137, not 124, when the app had to be killed", async () => {
    const r = await run([image, "--timeout", "5s", "--stop-timeout", "2s"]);
    assert.equal(r.code, 137, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    assert.match(r.stderr, /timed out after 5 s/);
    assert.match(r.stderr, /the app did not stop within 2 s; VM killed/);
  });
});

describe("slimroot run: busybox on arm64 (virt)", { timeout: TEST_TIMEOUT_MS }, () => {
  test("boots with Debian's arm64 cloud kernel and exits 0", async () => {
    await fetchKernel({ arch: "arm64" });
    const fx = await busyboxFixture("arm64");
    const image = await build("busybox-arm64", [fx.ociRef, "--platform", "linux/arm64", "--", "uname", "-m"]);
    const r = await run([image]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^aarch64$/m);
  });
});
