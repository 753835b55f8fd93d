/**
 * Boots the guest init (init/) for real under QEMU (TCG) with Debian's cloud kernels and a
 * static busybox as the app, and checks what the app sees and what the init reports.
 *
 * Slow (each boot is 2-4 s of emulation) and needs apt (kernels, busybox:arm64), QEMU, cpio
 * and make/gcc/aarch64-linux-gnu-gcc. Boot timings are printed as test diagnostics.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, type TestContext, test } from "node:test";
import { promisify } from "node:util";
import { GuestReport, REPORT_KEY_PATH } from "../src/vm/report.js";
import { buildTestModule, type DebianArch, debianBusybox, debianKernel, repoRoot } from "./support/kernel.js";

const run = promisify(execFile);

const BOOT_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 90_000;

const initBinary = (arch: DebianArch) => join(repoRoot, "init", "build", `init-${arch}`);

/** One config record; VALUE escaped as docs/app-config.md says. */
type Rec = [key: string, value: string];

function confText(records: Rec[]): string {
  const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
  return records.map(([k, v]) => `${k} ${esc(v)}\n`).join("");
}

/** `sh -c SCRIPT` as arg records, with PATH=/bin. */
function shApp(script: string, ...extraArgs: string[]): Rec[] {
  return [
    ["version", "1"],
    ["arg", "sh"],
    ["arg", "-c"],
    ["arg", script],
    ...extraArgs.map((a): Rec => ["arg", a]),
    ["env", "PATH=/bin"],
  ];
}

interface Image {
  arch: DebianArch;
  /** app.conf's records; null: no app.conf at all. */
  app: Rec[] | null;
  run?: Rec[];
  /** Kernel modules to put under /lib/modules/slimroot, as [path relative to it, source]. */
  modules?: [string, string][];
  /** Extra files: [absolute guest path, content, mode]. */
  files?: [string, string | Buffer, number][];
  dirs?: string[];
  /** The launcher's report key (src/vm/report.ts), in the initramfs as slimroot run puts it. */
  key?: string;
}

let workRoot = "";
let applets: string[] = [];

/** A newc cpio: /init, busybox with its applet links in /bin, the config, modules, files. */
async function buildInitramfs(img: Image): Promise<string> {
  const dir = await mkdtemp(join(workRoot, "img-"));
  const root = join(dir, "root");
  for (const d of ["bin", "etc/slimroot", ...(img.dirs ?? [])])
    await mkdir(join(root, d), { recursive: true });
  await copyFile(initBinary(img.arch), join(root, "init"));
  await chmod(join(root, "init"), 0o755);
  await copyFile(await debianBusybox(img.arch), join(root, "bin", "busybox"));
  await chmod(join(root, "bin", "busybox"), 0o755);
  for (const a of applets) await symlink("busybox", join(root, "bin", a));
  if (img.app) await writeFile(join(root, "etc/slimroot/app.conf"), confText(img.app));
  if (img.run) await writeFile(join(root, "etc/slimroot/run.conf"), confText(img.run));
  if (img.key) await writeFile(join(root, REPORT_KEY_PATH), img.key, { mode: 0o600 });
  for (const [rel, src] of img.modules ?? []) {
    const dest = join(root, "lib/modules/slimroot", rel);
    await mkdir(dirname(dest), { recursive: true });
    await copyFile(src, dest);
  }
  for (const [path, content, mode] of img.files ?? []) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content, { mode });
    await chmod(join(root, path), mode);
  }
  const out = join(dir, "initrd.cpio");
  // find lists a directory before its contents, as the kernel's unpacker needs.
  await run("sh", ["-c", `find . | LC_ALL=C cpio -o -H newc --quiet > ${out}`], { cwd: root });
  return out;
}

interface Boot {
  output: string;
  /** The init's report, read as slimroot run reads it (the key is made per boot). */
  report: GuestReport;
  /** Its exit status, or undefined when the report never came. */
  status: number | undefined;
  qemuExit: number | null;
  timedOut: boolean;
  wallMs: number;
  /** Guest /proc/uptime when the app started, when the app printed APP_UPTIME=. */
  appUptime: number | undefined;
}

const timings: string[] = [];

/** x86 TSC rate of the host; QEMU's TCG clock runs the guest TSC at it. */
async function hostTscKhz(): Promise<number | undefined> {
  const m = (await readFile("/proc/cpuinfo", "utf8")).match(/^cpu MHz\s*:\s*([\d.]+)/m);
  return m?.[1] ? Math.round(Number(m[1]) * 1000) : undefined;
}

async function qemuCommand(arch: DebianArch, initrd: string, extra: string[]): Promise<string[]> {
  const { kernel } = await debianKernel(arch);
  const common = ["-accel", "tcg", "-m", "256", "-nodefaults", "-no-reboot", "-display", "none"];
  const io = ["-serial", "stdio", "-kernel", kernel, "-initrd", initrd];
  if (arch === "amd64") {
    // microvm has neither HPET nor PM timer: when the host is busy, the kernel's PIT
    // calibration of the TSC fails and boot hangs for good. Telling it the rate avoids that.
    const khz = await hostTscKhz();
    const append = `console=ttyS0 reboot=t quiet panic=-1${khz ? ` tsc_early_khz=${khz}` : ""}`;
    return ["qemu-system-x86_64", "-M", "microvm", ...common, ...io, "-append", append, ...extra];
  }
  const append = "console=ttyAMA0 quiet panic=-1";
  return [
    "qemu-system-aarch64",
    "-M",
    "virt",
    "-cpu",
    "cortex-a57",
    ...common,
    ...io,
    "-append",
    append,
    ...extra,
  ];
}

async function boot(t: TestContext, image: Image, extra: string[] = []): Promise<Boot> {
  const report = new GuestReport();
  const img = { ...image, key: report.key };
  const initrd = await buildInitramfs(img);
  const [cmd, ...args] = await qemuCommand(img.arch, initrd, extra);
  const started = performance.now();
  const child = spawn(cmd!, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (b: Buffer) => {
    output += b.toString("utf8");
  });
  child.stderr.on("data", (b: Buffer) => {
    output += b.toString("utf8");
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, BOOT_TIMEOUT_MS);
  try {
    const qemuExit = await new Promise<number | null>((resolve, reject) => {
      child.on("error", reject);
      child.on("close", (code) => resolve(code));
    });
    const wallMs = Math.round(performance.now() - started);
    report.scan(output);
    const up = output.match(/APP_UPTIME=([\d.]+)/);
    const result: Boot = {
      output,
      report,
      status: report.exitCode,
      qemuExit,
      timedOut,
      wallMs,
      appUptime: up?.[1] ? Number(up[1]) : undefined,
    };
    const timing =
      `QEMU ${wallMs} ms wall` +
      (result.appUptime !== undefined ? `, app started at ${result.appUptime} s guest uptime` : "");
    t.diagnostic(timing);
    timings.push(`${t.name} (${img.arch}): ${timing}`);
    return result;
  } finally {
    clearTimeout(timer);
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}

/** The boot ended on its own with the report line; shows the console when not. */
function assertExited(b: Boot, status: number): void {
  assert.equal(b.timedOut, false, `QEMU still running after ${BOOT_TIMEOUT_MS} ms:\n${b.output}`);
  assert.equal(b.status, status, `expected SLIMROOT_EXIT=${status}, console:\n${b.output}`);
  assert.equal(b.qemuExit, 0, `QEMU exit status ${b.qemuExit}:\n${b.output}`);
}

/** Lines of the console that start with `prefix`, the prefix removed. */
function linesWith(output: string, prefix: string): string[] {
  return output
    .split(/\r?\n/)
    .filter((l) => l.startsWith(prefix))
    .map((l) => l.slice(prefix.length));
}

const UPTIME = "read up _ < /proc/uptime; echo APP_UPTIME=$up; ";

/**
 * The virtio-net module chain from the Debian kernel in /lib/modules/slimroot (in nested
 * directories, in no particular order), a virtio-mmio NIC on QEMU's user network, run.conf
 * with ip/gateway/dns: the app must reach a server on the host at once.
 */
async function virtioNet(t: TestContext, arch: DebianArch): Promise<void> {
  const { modulesDir } = await debianKernel(arch);
  const rels = [
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio_mmio.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
    "kernel/net/core/failover.ko",
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/virtio_net.ko",
  ];
  const server: Server = createServer((_req, res) => res.end("hello-from-the-host\n"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  try {
    const script = [
      UPTIME,
      // first thing: the link must carry traffic as soon as the app starts
      `echo "HTTP=$(wget -q -O - http://10.0.2.2:${port}/)"`,
      "sed 's/^/MOD:/' /proc/modules",
      'echo "CARRIER=$(cat /sys/class/net/eth0/carrier) OPER=$(cat /sys/class/net/eth0/operstate)"',
      "ip -4 addr show eth0 | sed 's/^/ADDR:/'",
      "ip route | sed 's/^/ROUTE:/'",
      "sed 's/^/RESOLV:/' /etc/resolv.conf",
    ].join("\n");
    const b = await boot(
      t,
      {
        arch,
        app: shApp(script),
        run: [
          ["ip", "10.0.2.15/24"],
          ["gateway", "10.0.2.2"],
          ["dns", "10.0.2.3"],
        ],
        modules: rels.map((r): [string, string] => [r, join(modulesDir, r)]),
      },
      ["-device", "virtio-net-device,netdev=n0", "-netdev", "user,id=n0"],
    );
    assertExited(b, 0);
    const mods = linesWith(b.output, "MOD:").map((l) => l.split(" ")[0]);
    for (const m of ["virtio", "virtio_ring", "virtio_mmio", "failover", "net_failover", "virtio_net"]) {
      assert.ok(mods.includes(m), `${m} not loaded:\n${b.output}`);
    }
    assert.doesNotMatch(b.output, /slimroot-init: module/);
    // operstate may still say "down": the kernel's linkwatch updates it up to 1 s late
    assert.match(linesWith(b.output, "CARRIER=")[0] ?? "", /^1 OPER=/);
    assert.ok(
      linesWith(b.output, "ADDR:").some((l) => l.includes("inet 10.0.2.15/24")),
      b.output,
    );
    assert.ok(
      linesWith(b.output, "ROUTE:").some((l) => /^default via 10\.0\.2\.2 dev eth0/.test(l)),
      b.output,
    );
    assert.deepEqual(linesWith(b.output, "RESOLV:"), ["nameserver 10.0.2.3"]);
    assert.deepEqual(linesWith(b.output, "HTTP="), ["hello-from-the-host"]);
  } finally {
    server.close();
  }
}

/** test/fixtures/console-app.c, built static for amd64. */
async function consoleApp(): Promise<Buffer> {
  const out = join(await mkdtemp(join(workRoot, "console-app-")), "app");
  await run("gcc", ["-static", "-O2", "-o", out, join(repoRoot, "test/fixtures/console-app.c")]);
  return readFile(out);
}

before(async () => {
  await run("make", ["-C", join(repoRoot, "init")]);
  workRoot = await mkdtemp(join(tmpdir(), "slimroot-init-boot-"));
  const { stdout } = await run("/bin/busybox", ["--list"]);
  applets = stdout.split("\n").filter((a) => a && a !== "busybox");
  await Promise.all([debianKernel("amd64"), debianKernel("arm64"), debianBusybox("arm64")]);
});

after(async () => {
  if (workRoot) await rm(workRoot, { recursive: true, force: true });
  if (timings.length) console.log(`# boot timings (TCG)\n${timings.map((t) => `#   ${t}`).join("\n")}`);
});

describe("slimroot-init on amd64 (microvm)", { timeout: 20 * TEST_TIMEOUT_MS }, () => {
  test("reports the app's exit code and QEMU exits", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const b = await boot(t, { arch: "amd64", app: shApp(`${UPTIME}exit 7`) });
    assertExited(b, 7);
    assert.equal(linesWith(b.output, "SLIMROOT_EXIT=").length, 1);
  });

  test("the app cannot speak for the init: its look-alike report is text, and the key is nowhere it can read", {
    timeout: TEST_TIMEOUT_MS,
  }, async (t) => {
    // Everything the app could read the key from, were it there: files, command lines, the
    // kernel log. Then a forged report (a guessed key too), as a partial last line.
    const script = [
      "cat /proc/cmdline /proc/1/cmdline /proc/1/environ; dmesg; ls -la /etc/slimroot",
      "for f in /etc/slimroot/*; do cat $f; done",
      `printf 'SLIMROOT_REPORT %s\nSLIMROOT_TRACE /forged\nSLIMROOT_EXIT=0\n' ${"0".repeat(32)}`,
      "echo SLIMROOT_EXIT=0; printf 'SLIMROOT_EXIT=0'; exit 3",
    ].join("\n");
    const b = await boot(t, { arch: "amd64", app: shApp(script), run: [["trace", "1"]] });
    assertExited(b, 3);
    assert.equal(b.output.split(b.report.key).length, 2, `the key appears only in the report:\n${b.output}`);
    assert.match(b.output, new RegExp(`SLIMROOT_EXIT=0SLIMROOT_REPORT ${b.report.key}\r?$`, "m"));
    assert.ok(!b.report.traced.includes("/forged"), b.output);
    assert.ok(b.report.traced.includes("/bin/busybox"), b.output);
  });

  test("an app killed by SIGKILL reports 137", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const b = await boot(t, { arch: "amd64", app: shApp("kill -9 $$") });
    assertExited(b, 137);
  });

  test("env, workdir, uid/gid/groups, hostname, escapes and run.conf", {
    timeout: TEST_TIMEOUT_MS,
  }, async (t) => {
    const script = [
      UPTIME,
      'echo "IDS=$(id -u) $(id -g) [$(id -G)]"',
      'echo "PWD=$(pwd)"',
      "env | sort | sed 's/^/ENV:/'",
      `[ "$1" = "$(printf 'line1\\nback\\\\slash')" ] && echo ARG_OK`,
      'echo "HOST=$(hostname)"',
      "sed 's/^/HOSTS:/' /etc/hosts",
      "exit 0",
    ].join("\n");
    const b = await boot(t, {
      arch: "amd64",
      app: [
        ...shApp("echo run.conf args did not replace these; exit 99"),
        ["env", "FOO=from-app"],
        ["env", "KEEP=1"],
        ["workdir", "/srv/app/created"],
        ["uid", "1000"],
        ["gid", "1001"],
        ["groups", "10,20"],
        ["user", "informational"],
        ["some-future-key", "is ignored"],
      ],
      run: [
        ["arg", "sh"],
        ["arg", "-c"],
        ["arg", script],
        ["arg", "argv0"],
        ["arg", "line1\nback\\slash"],
        ["env", "FOO=from-run"],
        ["hostname", "testbox"],
      ],
      dirs: ["srv/app"],
    });
    assertExited(b, 0);
    assert.deepEqual(linesWith(b.output, "IDS="), ["1000 1001 [1001 10 20]"]);
    assert.deepEqual(linesWith(b.output, "PWD="), ["/srv/app/created"]);
    // Exactly the configured environment (sh adds PWD and SHLVL itself); nothing from the
    // kernel's environment for init (HOME=/, TERM=linux).
    const env = linesWith(b.output, "ENV:").filter((l) => !/^(PWD|SHLVL|OLDPWD|_)=/.test(l));
    assert.deepEqual(env, ["FOO=from-run", "KEEP=1", "PATH=/bin"]);
    assert.match(b.output, /^ARG_OK\r?$/m);
    assert.deepEqual(linesWith(b.output, "HOST="), ["testbox"]);
    assert.ok(linesWith(b.output, "HOSTS:").includes("127.0.1.1\ttestbox"), b.output);
  });

  test("run.conf's dns and hostname win over the image's /etc/resolv.conf and /etc/hosts", {
    timeout: TEST_TIMEOUT_MS,
  }, async (t) => {
    const script =
      "sed 's/^/RESOLV:/' /etc/resolv.conf; sed 's/^/HOSTS:/' /etc/hosts; ls -l /etc/resolv.conf";
    const b = await boot(t, {
      arch: "amd64",
      app: shApp(script),
      run: [
        ["dns", "10.0.2.3"],
        ["hostname", "runbox"],
      ],
      files: [
        ["/etc/hosts", "1.2.3.4\timagehost\n", 0o644],
        ["/etc/resolv.conf", "nameserver 9.9.9.9\n", 0o644],
      ],
    });
    assertExited(b, 0);
    assert.deepEqual(linesWith(b.output, "RESOLV:"), ["nameserver 10.0.2.3"]);
    const hosts = linesWith(b.output, "HOSTS:");
    assert.ok(hosts.includes("127.0.1.1\trunbox"), b.output);
    assert.ok(!hosts.some((l) => l.includes("imagehost")), b.output);
  });

  test("without run.conf settings the image's own /etc/resolv.conf and /etc/hosts stay", {
    timeout: TEST_TIMEOUT_MS,
  }, async (t) => {
    const b = await boot(t, {
      arch: "amd64",
      app: [
        ...shApp("sed 's/^/RESOLV:/' /etc/resolv.conf; sed 's/^/HOSTS:/' /etc/hosts"),
        ["dns", "10.0.2.3"],
      ],
      files: [
        ["/etc/hosts", "1.2.3.4\timagehost\n", 0o644],
        ["/etc/resolv.conf", "nameserver 9.9.9.9\n", 0o644],
      ],
    });
    assertExited(b, 0);
    assert.deepEqual(linesWith(b.output, "RESOLV:"), ["nameserver 9.9.9.9"]);
    assert.deepEqual(linesWith(b.output, "HOSTS:"), ["1.2.3.4\timagehost"]);
  });

  test("a missing entrypoint reports 127 and one not-found line", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const b = await boot(t, {
      arch: "amd64",
      app: [
        ["arg", "no-such-program"],
        ["env", "PATH=/bin"],
      ],
    });
    assertExited(b, 127);
    assert.match(b.output, /^slimroot-init: no-such-program: not found\r?$/m);
  });

  test("a non-executable entrypoint reports 126", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const b = await boot(t, {
      arch: "amd64",
      app: [["arg", "/srv/data.txt"]],
      files: [["/srv/data.txt", "just data\n", 0o644]],
    });
    assertExited(b, 126);
    assert.match(b.output, /^slimroot-init: \/srv\/data.txt: permission denied\r?$/m);
  });

  test("a script whose interpreter is missing says so (127)", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const b = await boot(t, {
      arch: "amd64",
      app: [["arg", "/srv/run.sh"]],
      files: [["/srv/run.sh", "#!/no/such/interpreter\n", 0o755]],
    });
    assertExited(b, 127);
    assert.match(b.output, /^slimroot-init: \/srv\/run.sh: .*interpreter.*missing\r?$/m);
  });

  test("a bad config record is an init failure (125)", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const b = await boot(t, { arch: "amd64", app: [...shApp("exit 0"), ["uid", "root"]] });
    assertExited(b, 125);
    assert.match(b.output, /^slimroot-init: \/etc\/slimroot\/app.conf:6: bad uid record\r?$/m);
  });

  test("no app.conf is an init failure (125)", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const b = await boot(t, { arch: "amd64", app: null });
    assertExited(b, 125);
    assert.match(b.output, /^slimroot-init: \/etc\/slimroot\/app.conf: no such file\r?$/m);
  });

  test("a failed mount is fatal (125)", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    // /proc is a plain file in this image, so proc cannot be mounted there
    const b = await boot(t, { arch: "amd64", app: shApp("exit 0"), files: [["/proc", "", 0o644]] });
    assertExited(b, 125);
    assert.match(b.output, /^slimroot-init: mount proc on \/proc: not a directory\r?$/m);
  });

  test("what the image has in /run and /tmp stays visible and writable (no tmpfs over it)", {
    timeout: TEST_TIMEOUT_MS,
  }, async (t) => {
    const script = "cat /run/app/marker /tmp/seed && touch /run/app/pid /tmp/new && echo WROTE";
    const b = await boot(t, {
      arch: "amd64",
      app: shApp(script),
      files: [
        ["/run/app/marker", "RUN_MARKER\n", 0o644],
        ["/tmp/seed", "TMP_SEED\n", 0o644],
      ],
    });
    assertExited(b, 0);
    assert.match(b.output, /^RUN_MARKER\r?$/m);
    assert.match(b.output, /^TMP_SEED\r?$/m);
    assert.match(b.output, /^WROTE\r?$/m);
  });

  test("a module that cannot load is one warning, not a failure", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { modulesDir } = await debianKernel("amd64");
    // virtio_net without virtio, virtio_ring and net_failover: unknown symbols
    const rel = "kernel/drivers/net/virtio_net.ko";
    const b = await boot(t, { arch: "amd64", app: shApp("exit 0"), modules: [[rel, join(modulesDir, rel)]] });
    assertExited(b, 0);
    assert.deepEqual(linesWith(b.output, "slimroot-init: "), [
      "module virtio_net: unknown symbols (a module it needs is missing?)",
    ]);
  });

  test("a module whose init never returns does not keep the app from starting", {
    timeout: TEST_TIMEOUT_MS,
  }, async (t) => {
    const { version } = await debianKernel("amd64");
    const mod = await buildTestModule(
      await mkdtemp(join(workRoot, "hang-")),
      version,
      "hang",
      "msleep(3600 * 1000);",
    );
    if ("missing" in mod) {
      t.skip(mod.missing);
      return;
    }
    const b = await boot(t, {
      arch: "amd64",
      app: shApp("echo APP_RAN"),
      modules: [["hang.ko", mod.ko]],
    });
    assertExited(b, 0);
    assert.match(b.output, /^APP_RAN\r?$/m);
    assert.deepEqual(
      linesWith(b.output, "slimroot-init: ").filter((l) => l.startsWith("module")),
      ["module hang: its init has not returned after 10 s; going on without it"],
    );
  });

  test("orphans are reaped: no zombies", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    // The subshell exits at once, so its three sleeps are reparented to PID 1 and exit
    // while the app still runs; only the init can reap them.
    const script = [
      "(sleep 1 & sleep 1 & sleep 1 &)",
      "sleep 0.3",
      "for s in /proc/[0-9]*/stat; do read -r pid comm state ppid rest 2>/dev/null < $s || continue;" +
        ' [ "$comm" = "(sleep)" ] && echo "ORPHAN_PPID=$ppid"; done',
      "sleep 2.5",
      "z=0",
      "for s in /proc/[0-9]*/stat; do read -r pid comm state rest 2>/dev/null < $s || continue;" +
        ' [ "$state" = Z ] && { echo "ZOMBIE=$pid $comm"; z=$((z+1)); }; done',
      'echo "ZOMBIES=$z"',
    ].join("\n");
    const b = await boot(t, { arch: "amd64", app: shApp(script) });
    assertExited(b, 0);
    assert.deepEqual(linesWith(b.output, "ORPHAN_PPID="), ["1", "1", "1"], b.output);
    assert.deepEqual(linesWith(b.output, "ZOMBIES="), ["0"], b.output);
  });

  test("the trace and exit report survive an app that leaves the console non-blocking", {
    timeout: TEST_TIMEOUT_MS,
  }, async (t) => {
    // The app shares the console's open file description with the init: its O_NONBLOCK made
    // the init's writes fail with EAGAIN once the UART's buffer was full, losing the report.
    const b = await boot(t, {
      arch: "amd64",
      app: [
        ["arg", "/console-app"],
        ["arg", "nonblock"],
      ],
      run: [["trace", "1"]],
      files: [["/console-app", await consoleApp(), 0o755]],
    });
    assertExited(b, 5);
    assert.match(b.output, /^APP_DONE\r?$/m);
    const created = b.report.traced.filter((l) => /^\/nb\/\d{4}-a-long-/.test(l));
    assert.equal(created.length, 2000, b.output.slice(-2000));
  });

  test("an app that suspends the console's output neither hangs the VM nor loses the report", {
    timeout: TEST_TIMEOUT_MS,
  }, async (t) => {
    const b = await boot(t, {
      arch: "amd64",
      app: [
        ["arg", "/console-app"],
        ["arg", "stop"],
      ],
      files: [["/console-app", await consoleApp(), 0o755]],
    });
    assertExited(b, 6);
    assert.match(b.output, /^APP_DONE\r?$/m);
  });

  test("leftover processes do not keep the VM up", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const b = await boot(t, { arch: "amd64", app: shApp("sleep 1000 & sleep 1000 & exit 3") });
    assertExited(b, 3);
  });

  test("SIGTERM to PID 1 is forwarded to the app", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const script = "trap 'echo GOT_TERM; exit 42' TERM\nkill -TERM 1\nsleep 20 & wait $!\necho NO_SIGNAL";
    const b = await boot(t, { arch: "amd64", app: shApp(script) });
    assertExited(b, 42);
    assert.match(b.output, /^GOT_TERM\r?$/m);
  });

  test("loads the virtio-net modules and configures eth0", { timeout: TEST_TIMEOUT_MS }, (t) =>
    virtioNet(t, "amd64"),
  );
});

describe("slimroot-init on arm64 (virt, cortex-a57)", { timeout: 3 * TEST_TIMEOUT_MS }, () => {
  test("boots Debian's arm64 kernel and exits 0", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const script = `${UPTIME}echo "MACHINE=$(uname -m)"\ngrep -c ' /dev/pts devpts ' /proc/mounts | sed 's/^/PTS=/'\nexit 0`;
    const b = await boot(t, { arch: "arm64", app: shApp(script) });
    assertExited(b, 0);
    assert.deepEqual(linesWith(b.output, "MACHINE="), ["aarch64"]);
    assert.deepEqual(linesWith(b.output, "PTS="), ["1"]);
  });

  test("a missing entrypoint reports 127", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const b = await boot(t, { arch: "arm64", app: [["arg", "/no/such/app"]] });
    assertExited(b, 127);
    assert.match(b.output, /^slimroot-init: \/no\/such\/app: not found\r?$/m);
  });

  test("loads the virtio-net modules and configures eth0", { timeout: TEST_TIMEOUT_MS }, (t) =>
    virtioNet(t, "arm64"),
  );
});
