/**
 * `slimroot run --vmm firecracker` end to end: the files `--dry-run -o DIR` writes (checked
 * against Firecracker's schema), the one-line refusals, and a boot of those files. Firecracker
 * cannot run on this project's machines (no usable KVM), so the boot uses the stand-in of
 * test/support/firecracker-standin.ts, which boots the same config file on QEMU.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { constants, existsSync } from "node:fs";
import { access, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { elfArch } from "../src/elf/elf.js";
import { fetchKernel } from "../src/kernel/fetch.js";
import { guestMac } from "../src/vm/firecracker.js";
import { type CliResult, runCli, startCli } from "./support/cli.js";
import { firecrackerValidator, NO_SHARED, sharedFirecrackerDir } from "./support/firecracker-schema.js";
import { firecrackerStandin } from "./support/firecracker-standin.js";
import { busyboxFixture } from "./support/fixtures.js";
import { qemusUsing } from "./support/qemu.js";

const TEST_TIMEOUT_MS = 180_000;
const shared = sharedFirecrackerDir();

let work = "";
let image = "";
let kernelDir = "";
let kernelFile = "";
/** PATH without any firecracker: only the system's directories. */
const PLAIN_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"].join(
  delimiter,
);

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-fc-test-"));
  const k = await fetchKernel({ arch: "amd64" });
  kernelDir = k.dir;
  kernelFile = join(k.dir, k.manifest.kernel);
  const fx = await busyboxFixture("amd64");
  image = join(work, "busybox.cpio.gz");
  const r = await runCli([
    "build",
    "-o",
    image,
    fx.ociRef,
    "--",
    "sh",
    "-c",
    "echo from the firecracker config; exit 7",
  ]);
  assert.equal(r.code, 0, r.stderr);
});
after(async () => {
  assert.deepEqual(await qemusUsing(work), [], "QEMU processes left behind");
  await rm(work, { recursive: true, force: true });
});

const tmp = () => join(work, "tmp");
async function run(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  await mkdir(tmp(), { recursive: true });
  return runCli(["run", image, "--vmm", "firecracker", ...args], { TMPDIR: tmp(), PATH: PLAIN_PATH, ...env });
}

/** PATH with the stand-in `firecracker` first. */
async function standinPath(): Promise<string> {
  const bin = join(work, "standin-bin");
  if (!existsSync(join(bin, "firecracker"))) await firecrackerStandin(bin);
  return `${bin}${delimiter}${PLAIN_PATH}`;
}

const kvmUsable = () =>
  access("/dev/kvm", constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
const NO_KVM = "no usable /dev/kvm: slimroot does not start Firecracker (or the stand-in) without it";

/** slimroot's temp files in TMPDIR (tsx keeps its compile cache there too). */
const leftovers = async () => (await readdir(tmp())).filter((f) => !f.startsWith("tsx-"));

/** Exit 125, one line on stderr, nothing on stdout, no temp files left. */
async function assertRefused(r: CliResult, message: RegExp): Promise<void> {
  assert.equal(r.code, 125, `stderr: ${r.stderr}\nstdout: ${r.stdout}`);
  assert.equal(r.stdout, "");
  const lines = r.stderr.split("\n").filter(Boolean);
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, message);
  assert.deepEqual(await leftovers(), [], "temp files left");
}

describe("slimroot run --vmm firecracker", { timeout: 10 * TEST_TIMEOUT_MS }, () => {
  test("--dry-run -o DIR writes vm.json, the vmlinux, the initrd and the log file, and prints the exact command", async () => {
    const out = join(work, "dry");
    const r = await run(["--tap", "tap0", "--cpus", "2", "--mem", "512", "--dry-run", "-o", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `firecracker --no-api --config-file ${join(out, "vm.json")}\n`);
    assert.deepEqual((await readdir(out)).sort(), [
      ".slimroot-output",
      "firecracker.log",
      "initrd",
      "vm.json",
      "vmlinux",
    ]);
    const config = JSON.parse(await readFile(join(out, "vm.json"), "utf8"));
    assert.deepEqual(config["boot-source"], {
      kernel_image_path: join(out, "vmlinux"),
      boot_args: "console=ttyS0 reboot=k panic=1 quiet i8042.noaux i8042.nomux i8042.dumbkbd",
      initrd_path: join(out, "initrd"),
    });
    assert.deepEqual(config["machine-config"], { vcpu_count: 2, mem_size_mib: 512, smt: false });
    assert.deepEqual(config["network-interfaces"], [
      { iface_id: "eth0", host_dev_name: "tap0", guest_mac: guestMac("tap0") },
    ]);
    assert.deepEqual(config.drives, []);
    assert.equal(elfArch(await readFile(join(out, "vmlinux"))), "amd64");
    // The initrd starts with the image as built, then the modules and run.conf archives.
    const [img, initrd] = await Promise.all([readFile(image), readFile(join(out, "initrd"))]);
    assert.deepEqual(initrd.subarray(0, img.length), img);
    assert.ok(
      initrd.includes(Buffer.from("ip 172.16.0.2/30\ngateway 172.16.0.1\n")),
      "run.conf's network settings",
    );
    assert.ok(
      initrd.includes(Buffer.from("etc/slimroot/modules/virtio_mmio.ko")),
      "virtio_mmio in the initrd",
    );
    // What the user needs to know: Debian's kernel sees the devices through ACPI only; the guest's address.
    assert.match(
      r.stderr,
      /finds Firecracker's devices through ACPI only .* needs Firecracker 1\.8 or later/,
    );
    assert.match(
      r.stderr,
      /the guest is 172\.16\.0\.2 on tap0 \(host side, as root: ip addr add 172\.16\.0\.1\/30 dev tap0/,
    );
  });

  test("every config it writes validates against Firecracker's schema", async (t) => {
    if (!shared) return t.skip(NO_SHARED);
    const validator = firecrackerValidator(shared);
    const variants = [
      [],
      ["--tap", "fc-tap3", "--guest-ip", "10.1.2.3/24", "--gateway", "10.1.2.1"],
      ["--vsock", "42", "--cpus", "32", "--mem", "64"],
      ["-e", "A=B", "--", "sh", "-c", "true"],
    ];
    for (const [i, args] of variants.entries()) {
      const out = join(work, `variant-${i}`);
      const r = await run(["--dry-run", "-o", out, ...args]);
      assert.equal(r.code, 0, r.stderr);
      const config = JSON.parse(await readFile(join(out, "vm.json"), "utf8"));
      assert.deepEqual(validator.errors(config), [], args.join(" "));
      if (args.includes("--vsock")) {
        assert.deepEqual(config.vsock, { guest_cid: 42, uds_path: join(out, "vsock.sock") });
        const initrd = await readFile(join(out, "initrd"));
        assert.ok(initrd.includes(Buffer.from("modules/vmw_vsock_virtio_transport.ko")), "vsock modules");
      }
    }
  });

  test("without firecracker on PATH: one line, exit 125", async () => {
    await assertRefused(
      await run([]),
      /^slimroot: cannot run Firecracker here: firecracker is not on PATH( and \/dev\/kvm is not usable \(\w+\))?; --dry-run -o DIR/,
    );
  });

  test("--tap: any name the kernel takes is printed quoted in the host command; others are one line", async () => {
    for (const tap of ["tap0;reboot", "$(id)"]) {
      const out = join(work, `dry-tap-${tap.length}`);
      const r = await run(["--tap", tap, "--dry-run", "-o", out]);
      assert.equal(r.code, 0, r.stderr);
      const q = `'${tap}'`;
      assert.ok(r.stderr.includes(`ip addr add 172.16.0.1/30 dev ${q} && ip link set ${q} up)`), r.stderr);
      assert.equal(
        JSON.parse(await readFile(join(out, "vm.json"), "utf8"))["network-interfaces"][0].host_dev_name,
        tap,
      );
      await rm(out, { recursive: true });
    }
    for (const [tap, why] of [
      ["-rf", /would read as an option/],
      ["a/b", /no "\/"/],
      ["tap 0", /no whitespace/],
      ["tap-with-16bytes", /1 to 15 bytes/],
      ["..", /not an interface name/],
    ] as const)
      await assertRefused(
        await run([`--tap=${tap}`, "--dry-run"]),
        new RegExp(`^slimroot: --tap ${tap.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: .*${why.source}`),
      );
  });

  // -p, --cpus and the other VMM's options: refused by the plan (src/vm/plan.test.ts).
  test("a kernel that cannot work with Firecracker: a clear error, even for --dry-run, nothing written", async () => {
    // Debian's kernel file, with a config beside it that has neither way to find devices.
    const dir = join(work, "broken-kernel");
    await mkdir(dir, { recursive: true });
    await symlink(kernelFile, join(dir, "vmlinuz-6.1-noacpi"));
    const config = (
      await readFile(
        join(kernelDir, (await readdir(kernelDir)).find((f) => f.startsWith("config-"))!),
        "utf8",
      )
    ).replace(/^CONFIG_ACPI=y$/m, "# CONFIG_ACPI is not set");
    await writeFile(join(dir, "config-6.1-noacpi"), config);
    const out = join(work, "never");
    const r = await run([
      "--kernel",
      join(dir, "vmlinuz-6.1-noacpi"),
      "--tap",
      "tap0",
      "--dry-run",
      "-o",
      out,
    ]);
    await assertRefused(
      r,
      /^slimroot: kernel .*vmlinuz-6\.1-noacpi cannot work with Firecracker: no CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES .* and no ACPI, so its network, disks and vsock are invisible$/,
    );
    assert.equal(existsSync(out), false, "-o DIR left behind");
  });

  test("-o without --dry-run is refused in one line", async () => {
    const o = await run(["-o", join(work, "x")]);
    assert.equal(o.code, 125);
    assert.match(o.stderr, /^slimroot: -o DIR: only with --dry-run\n$/);
  });

  test("the files boot, and the app's exit status comes back (stand-in: the same config on QEMU)", {
    timeout: TEST_TIMEOUT_MS,
  }, async (t) => {
    if (
      !(await access("/dev/kvm", constants.R_OK | constants.W_OK).then(
        () => true,
        () => false,
      ))
    )
      return t.skip("no usable /dev/kvm: slimroot does not start Firecracker (or the stand-in) without it");
    const r = await run(["--timeout", "150s"], { PATH: await standinPath() });
    assert.equal(r.code, 7, `stderr: ${r.stderr}\nstdout: ${r.stdout.slice(-2000)}`);
    assert.match(r.stdout, /from the firecracker config\n/);
    assert.match(r.stdout, /SLIMROOT_EXIT=7/);
    assert.deepEqual(await leftovers(), [], "temp files left");
  });

  test("--timeout: no API socket to ask the app to stop, so Firecracker is ended at once (124)", {
    timeout: TEST_TIMEOUT_MS,
  }, async (t) => {
    if (!(await kvmUsable())) return t.skip(NO_KVM);
    const r = await run(["--timeout", "3s", "--", "sleep", "600"], { PATH: await standinPath() });
    assert.equal(r.code, 124, r.stderr);
    assert.match(r.stderr, /^slimroot: timed out after 3 s; VM stopped\n$/);
    assert.deepEqual(await leftovers(), [], "temp files left");
  });

  test("on a tap: the guest has its default address and MAC, and serves the host (stand-in, as root)", {
    timeout: TEST_TIMEOUT_MS,
  }, async (t) => {
    if (!(await kvmUsable())) return t.skip(NO_KVM);
    if (process.getuid?.() !== 0 || !existsSync("/dev/net/tun"))
      return t.skip("needs root and /dev/net/tun to make a tap");
    // A tap of our own, numbered so its default network is unlikely to meet another test's.
    const n = 20 + (process.pid % 200);
    const tap = `slrfc${n}`;
    const ip = (...args: string[]) =>
      execFileSync("ip", args, { stdio: ["ignore", "pipe", "pipe"] }).toString();
    ip("tuntap", "add", tap, "mode", "tap");
    try {
      ip("addr", "add", `172.16.${n}.1/30`, "dev", tap);
      ip("link", "set", tap, "up");
      await mkdir(tmp(), { recursive: true });
      const cli = startCli(
        [
          "run",
          image,
          "--vmm",
          "firecracker",
          "--tap",
          tap,
          "--timeout",
          "170s",
          "--",
          "httpd",
          "-f",
          "-p",
          "8080",
          "-h",
          "/etc",
        ],
        { TMPDIR: tmp(), PATH: await standinPath() },
      );
      let body = "";
      const deadline = Date.now() + 150_000;
      while (Date.now() < deadline && cli.child.exitCode === null) {
        body = await fetch(`http://172.16.${n}.2:8080/passwd`, { signal: AbortSignal.timeout(3000) }).then(
          (r) => (r.ok ? r.text() : ""),
          () => "",
        );
        if (body) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      // Read while the guest is up: once it is gone the host's next probe leaves no address.
      const neighbours = ip("neigh", "show", "dev", tap);
      cli.child.kill("SIGTERM");
      const code = await cli.exited;
      assert.match(
        body,
        /^root:/m,
        `no answer from 172.16.${n}.2:8080; stderr: ${cli.stderr}; console: ${cli.stdout.slice(-3000)}`,
      );
      assert.match(cli.stderr, new RegExp(`the guest is 172\\.16\\.${n}\\.2 on ${tap}`));
      assert.match(
        neighbours,
        new RegExp(`172\\.16\\.${n}\\.2 lladdr ${guestMac(tap)}`),
        `the guest's MAC; console: ${cli.stdout.slice(-3000)}`,
      );
      assert.equal(code, 143, "SIGTERM ends Firecracker at once: 128+15");
    } finally {
      ip("tuntap", "del", tap, "mode", "tap");
    }
  });
});
