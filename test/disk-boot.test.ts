/**
 * Disk roots end to end: nginx built as ext4, erofs and squashfs by an unprivileged user,
 * booted under QEMU (TCG) with Debian's cloud kernel from `slimroot kernel fetch`.
 * Read-only roots take writes in their overlay and leave the image file as it was; a
 * read-write ext4 root survives a killed VM; --volume data outlives the VM.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync } from "node:fs";
import { copyFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fetchKernel } from "../src/kernel/fetch.js";
import { freePort } from "../src/util/net.js";
import { type CliResult, runCli, startCli } from "./support/cli.js";
import { nginxFixture } from "./support/fixtures.js";
import { cliAsNobody, nobodyDir } from "./support/nobody.js";
import { qemusUsing } from "./support/qemu.js";

const TEST_TIMEOUT_MS = 240_000;
const FORMATS = [
  { format: "cpio", ext: "cpio.gz" },
  { format: "ext4", ext: "ext4" },
  { format: "erofs", ext: "erofs" },
  { format: "squashfs", ext: "sqfs" },
] as const;

let work = "";
const env = () => ({ TMPDIR: work });
const images = new Map<string, string>();

const sha256 = async (file: string) =>
  createHash("sha256")
    .update(await readFile(file))
    .digest("hex");

before(async () => {
  work = await mkdtemp("/tmp/slimroot-disk-boot-");
  chmodSync(work, 0o755);
  nobodyDir(join(work, "home"), true);
  await fetchKernel({ arch: "amd64" });
  // A copy the unprivileged user can read (the fixture cache is root's).
  const layout = join(work, "oci");
  execFileSync("cp", ["-r", (await nginxFixture()).ociLayout, layout]);
  execFileSync("chmod", ["-R", "a+rX", layout]);
  for (const { format, ext } of FORMATS) {
    const out = join(work, "home", `nginx.${ext}`);
    const r = cliAsNobody(["build", `oci:${layout}:latest`, "-o", out], join(work, "home"));
    assert.equal(r.code, 0, `build ${format} as uid 65534: ${r.stderr}`);
    images.set(format, out);
  }
});
after(async () => {
  assert.deepEqual(await qemusUsing(work), [], "QEMU processes left behind");
  await rm(work, { recursive: true, force: true });
});

async function run(args: string[]): Promise<CliResult> {
  const r = await runCli(["run", ...args], env());
  assert.deepEqual(await qemusUsing(work), [], "QEMU still running after slimroot run ended");
  return r;
}

/** A copy the test may change, so each test starts from the built image. */
async function copyOf(format: string, name: string): Promise<string> {
  const to = join(work, name);
  await copyFile(images.get(format)!, to);
  return to;
}

describe("disk roots: nginx serves from each format", { timeout: 4 * TEST_TIMEOUT_MS }, () => {
  for (const { format } of FORMATS.filter((f) => f.format !== "cpio")) {
    test(`${format}: the welcome page on a forwarded port; SIGTERM stops it with status 0`, async () => {
      const image = await copyOf(format, `serve.${format}`);
      const port = await freePort();
      const vm = startCli(["run", image, "-p", `${port}:80`], env());
      try {
        let body = "";
        const deadline = Date.now() + 180_000;
        while (Date.now() < deadline && vm.child.exitCode === null) {
          try {
            const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(3000) });
            if (res.status === 200) {
              body = await res.text();
              break;
            }
          } catch {
            // not up yet
          }
          await new Promise((r) => setTimeout(r, 250));
        }
        assert.match(body, /Welcome to nginx/, `stdout:\n${vm.stdout}\nstderr:\n${vm.stderr}`);
        vm.child.kill("SIGTERM");
        assert.equal(await vm.exited, 0, `stdout:\n${vm.stdout}\nstderr:\n${vm.stderr}`);
      } finally {
        vm.child.kill("SIGKILL");
      }
      if (format === "ext4") execFileSync("e2fsck", ["-fn", image], { stdio: "pipe" });
    });
  }
});

describe("read-only roots: writes go to the overlay, the image is unchanged", {
  timeout: 4 * TEST_TIMEOUT_MS,
}, () => {
  const WRITE =
    "echo written > /etc/probe && mkdir -p /var/cache/x && echo more > /var/cache/x/y && cat /etc/probe /var/cache/x/y";
  for (const { format, extra } of [
    { format: "erofs", extra: [] },
    { format: "squashfs", extra: [] },
    { format: "ext4", extra: ["--read-only"] },
  ]) {
    test(`${format}${extra.length ? " --read-only" : ""}`, async () => {
      const image = await copyOf(format, `ro.${format}`);
      const before = await sha256(image);
      const r = await run([image, ...extra, "--", "/bin/sh", "-c", WRITE]);
      assert.equal(r.code, 0, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
      assert.match(r.stdout, /written\r?\nmore/);
      assert.equal(await sha256(image), before, "the image file's bytes changed");
    });
  }

  // --read-only on a format that is read-only anyway: refused by the plan (src/vm/plan.test.ts).
});

describe("a read-write ext4 root survives a killed VM", { timeout: 3 * TEST_TIMEOUT_MS }, () => {
  test("killed mid-write, it mounts at the next boot and e2fsck -fn is clean after", async () => {
    const image = await copyOf("ext4", "killed.ext4");
    const writer =
      "i=0; while [ $i -lt 1000000 ]; do echo line $i >> /var/log/w; i=$((i+1)); [ $i = 1000 ] && sync && echo synced; [ $((i % 200)) = 0 ] && echo progress $i; done";
    const vm = startCli(["run", image, "--", "/bin/sh", "-c", writer], env());
    try {
      const deadline = Date.now() + 180_000;
      while (
        Date.now() < deadline &&
        !/synced[\s\S]*progress 2000/.test(vm.stdout) &&
        vm.child.exitCode === null
      )
        await new Promise((r) => setTimeout(r, 100));
      assert.match(
        vm.stdout,
        /synced[\s\S]*progress 2000/,
        `the writer never got going: ${vm.stdout}\n${vm.stderr}`,
      );
      // Pull the plug: QEMU itself, not slimroot's graceful stop.
      for (const pid of await qemusUsing(work)) process.kill(pid, "SIGKILL");
      assert.equal(await vm.exited, 125);
    } finally {
      vm.child.kill("SIGKILL");
    }
    const r = await run([image, "--", "/bin/sh", "-c", "wc -l < /var/log/w"]);
    assert.equal(r.code, 0, `second boot: ${r.stdout}\n${r.stderr}`);
    const lines = Number(/^(\d+)\r?$/m.exec(r.stdout)?.[1]);
    // What was synced before the kill is there (journal replay); later lines may be lost.
    assert.ok(lines >= 1000, `lines written before the kill: ${r.stdout}`);
    execFileSync("e2fsck", ["-fn", image], { stdio: "pipe" });
  });
});

describe("--volume", { timeout: 3 * TEST_TIMEOUT_MS }, () => {
  let volume = "";
  before(() => {
    volume = join(work, "data.ext4");
    execFileSync("mke2fs", ["-q", "-F", "-t", "ext4", volume, "32M"]);
  });

  test("data written in one boot is there in the next", async () => {
    const root = images.get("erofs")!;
    const first = await run([
      root,
      "--volume",
      `${volume}:/var/lib/app`,
      "--",
      "/bin/sh",
      "-c",
      "echo kept > /var/lib/app/note",
    ]);
    assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}`);
    const second = await run([
      root,
      "--volume",
      `${volume}:/var/lib/app:ro`,
      "--",
      "/bin/sh",
      "-c",
      "cat /var/lib/app/note",
    ]);
    assert.equal(second.code, 0, `${second.stdout}\n${second.stderr}`);
    assert.match(second.stdout, /^kept\r?$/m);
    execFileSync("e2fsck", ["-fn", volume], { stdio: "pipe" });
  });

  test("volumes on an initramfs root too", async () => {
    const r = await run([
      images.get("cpio")!,
      "--volume",
      `${volume}:/var/lib/app:ro`,
      "--",
      "/bin/cat",
      "/var/lib/app/note",
    ]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^kept\r?$/m);
  });

  // A missing volume file and a path clash: one line each, from the plan (src/vm/plan.test.ts);
  // a missing file once end to end, for the exit status and the single line.
  test("a missing volume file: one line, exit 125", async () => {
    const r = await run([images.get("erofs")!, "--volume", `${volume}.missing:/data`]);
    assert.equal(r.code, 125, r.stderr);
    assert.equal(r.stdout, "");
    assert.deepEqual(r.stderr.split("\n").filter(Boolean).length, 1, r.stderr);
    assert.match(r.stderr, /--volume .*\.missing: no such file/);
  });
});

describe("build --probe boots a disk image before writing it", { timeout: TEST_TIMEOUT_MS }, () => {
  test("erofs: verified, and the same bytes as an unverified build", async () => {
    const out = join(work, "verified.erofs");
    const r = await runCli(
      ["build", `oci:${join(work, "oci")}:latest`, "--probe", "http:80/", "-o", out],
      env(),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /verified: http:80\/ passed/);
    assert.equal(await sha256(out), await sha256(images.get("erofs")!));
  });
});

describe("--vmm firecracker --dry-run with a disk root", { timeout: TEST_TIMEOUT_MS }, () => {
  test("vm.json has the root read-only and the volume read-write; the initrd holds no image", async () => {
    const volume = join(work, "fc-data.ext4");
    execFileSync("mke2fs", ["-q", "-F", "-t", "ext4", volume, "16M"]);
    const dir = join(work, "fc");
    const r = await runCli(
      [
        "run",
        images.get("erofs")!,
        "--vmm",
        "firecracker",
        "--volume",
        `${volume}:/data`,
        "--dry-run",
        "-o",
        dir,
      ],
      env(),
    );
    assert.equal(r.code, 0, r.stderr);
    const config = JSON.parse(await readFile(join(dir, "vm.json"), "utf8")) as {
      drives: { path_on_host: string; is_read_only: boolean }[];
    };
    assert.deepEqual(
      config.drives.map((d) => [d.path_on_host, d.is_read_only]),
      [
        [images.get("erofs")!, true],
        [volume, false],
      ],
    );
    const initrd = await readFile(join(dir, "initrd"));
    assert.ok(
      initrd.length < 2 * 1024 * 1024,
      `the initrd is ${initrd.length} bytes: the init, modules and run.conf only`,
    );
    assert.match(initrd.toString("latin1"), /root erofs 1072 [0-9a-f]{32} ro/);
  });
});
