/**
 * The memory rule's minimum on slimroot's own kernels (issue 17 item 12), two boots per kernel:
 * an image of random data boots with exactly the memory `run` says it needs at least (the app
 * answers), and 4 MiB less cannot unpack it ("Initramfs unpacking failed"). The second boot runs
 * `run --dry-run`'s QEMU command with a smaller -m, since `run` itself refuses that --mem.
 *
 * Uses slimroot's kernel of each architecture from the kernel cache, building it when it is
 * missing (minutes of both cores: `npm test` builds both beside the tests and runs this last).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { runCli } from "./support/cli.js";
import { debianBusybox, slimrootKernel } from "./support/kernel.js";
import { qemusUsing } from "./support/qemu.js";

/** Under the rule's minimum by this much the image must not unpack (the rule is about 1 MiB above the real floor: docs/run.md). */
const MARGIN_MIB = 4;

let work = "";
const env = () => ({ TMPDIR: work });

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-memory-boot-"));
});
after(async () => {
  assert.deepEqual(await qemusUsing(work), [], "QEMU processes left behind");
  await rm(work, { recursive: true, force: true });
});

/** QEMU's console from `argv`, run to its end. */
function qemuConsole(argv: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 240_000);
    child.on("error", reject);
    child.on("close", () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

for (const arch of ["amd64", "arm64"] as const) {
  const kernel = await slimrootKernel(arch);
  test(`slimroot's ${arch} kernel: the rule's minimum boots, ${MARGIN_MIB} MiB less cannot unpack`, {
    timeout: 600_000,
  }, async () => {
    // 40 MiB of random data and a static busybox that prints the mounts.
    const dir = join(work, `tree-${arch}`);
    await mkdir(join(dir, "bin"), { recursive: true });
    await copyFile(await debianBusybox(arch), join(dir, "bin", "busybox"));
    await chmod(join(dir, "bin", "busybox"), 0o755);
    await writeFile(join(dir, "data"), randomBytes(40 << 20));
    const image = join(work, `random-${arch}.cpio`);
    const b = await runCli(
      [
        "build",
        `dir:${dir}`,
        "--platform",
        `linux/${arch}`,
        "--compress",
        "none",
        "--entrypoint",
        "/bin/busybox",
        "-o",
        image,
        "--",
        "cat",
        "/proc/mounts",
      ],
      env(),
    );
    assert.equal(b.code, 0, b.stderr);

    const refused = await runCli(["run", "--dry-run", "--kernel", kernel, "--mem", "1", image], env());
    const need = Number(/needs at least (\d+) MiB/.exec(refused.stderr)?.[1]);
    assert.ok(need > 2 * 40, refused.stderr);
    assert.match(refused.stderr, /its 4\d MiB of files are unpacked into RAM/);

    const booted = await runCli(["run", "--kernel", kernel, "--mem", String(need), image], env());
    assert.equal(booted.code, 0, booted.stderr);
    assert.match(booted.stdout, /^rootfs \/ rootfs /m);

    const dry = await runCli(
      ["run", "--dry-run", "-o", join(work, `vm-${arch}`), "--kernel", kernel, "--mem", String(need), image],
      env(),
    );
    assert.equal(dry.code, 0, dry.stderr);
    const line = dry.stdout.split("\n").find((l) => l.startsWith("qemu-system-"));
    assert.ok(line, dry.stdout);
    // Printed shell-quoted: only the -append value has quotes.
    const argv = line.match(/'[^']*'|\S+/g)!.map((a) => a.replace(/^'(.*)'$/, "$1"));
    const at = argv.indexOf("-m");
    assert.equal(argv[at + 1], String(need));
    argv[at + 1] = String(need - MARGIN_MIB);
    const out = await qemuConsole(argv);
    assert.match(out, /Initramfs unpacking failed: write error/);
    assert.doesNotMatch(out, /^rootfs \/ rootfs /m);
  });
}

const amd64Kernel = await slimrootKernel("amd64");
test("a kernel the rule has not measured: the memory is sized with a one-line warning, and --mem is taken as given", {
  timeout: 180_000,
}, async () => {
  // slimroot's own bzImage away from its directory: a 6.1.192 kernel of unknown origin.
  const kernel = join(work, "bzImage-copy");
  await copyFile(join(amd64Kernel, "bzImage"), kernel);
  const dir = join(work, "tree-small");
  await mkdir(join(dir, "bin"), { recursive: true });
  await copyFile(await debianBusybox("amd64"), join(dir, "bin", "busybox"));
  const image = join(work, "small.cpio.gz");
  const b = await runCli(
    ["build", `dir:${dir}`, "--platform", "linux/amd64", "--entrypoint", "/bin/busybox", "-o", image],
    env(),
  );
  assert.equal(b.code, 0, b.stderr);
  const sized = await runCli(["run", "--dry-run", "--kernel", kernel, image], env());
  assert.equal(sized.code, 0, sized.stderr);
  const warnings = sized.stderr.split("\n").filter((l) => l.includes("warning:"));
  assert.equal(warnings.length, 1, sized.stderr);
  assert.match(
    warnings[0]!,
    /^slimroot: warning: kernel .*bzImage-copy \(release 6\.1\.192, builder unknown, 4 KiB pages\) is not one whose memory use slimroot has measured: 256 MiB .*--mem overrides$/,
  );
  // Only the files are held against --mem: 24 MiB is far below any measured kernel's minimum.
  const given = await runCli(["run", "--dry-run", "--kernel", kernel, "--mem", "24", image], env());
  assert.equal(given.code, 0, given.stderr);
  assert.doesNotMatch(given.stderr, /warning:/);
  assert.match(given.stdout, / -m 24 /);
  // The same kernel in its directory is the measured one: no warning.
  const known = await runCli(["run", "--dry-run", "--kernel", amd64Kernel, image], env());
  assert.equal(known.code, 0, known.stderr);
  assert.doesNotMatch(known.stderr, /warning:/);
});
