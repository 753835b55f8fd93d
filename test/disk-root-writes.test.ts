/**
 * A read-write ext4 root is the image itself: the init must write none of it. The run's
 * /etc/hosts is a tmpfs file bind-mounted over the image's (as docker does), and an image's
 * /tmp and /run with content get an overlay, so each boot starts from the image's content.
 * Busybox built as ext4, booted twice under QEMU (TCG) with Debian's cloud kernel; the image's
 * files are read back with debugfs.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fetchKernel } from "../src/kernel/fetch.js";
import { runCli } from "./support/cli.js";
import { busyboxFixture } from "./support/fixtures.js";
import { qemusUsing } from "./support/qemu.js";

const TEST_TIMEOUT_MS = 300_000;
const IMAGE_HOSTS = "1.2.3.4\timagehost\n";

let work = "";
const env = () => ({ TMPDIR: work });

after(async () => {
  assert.deepEqual(await qemusUsing(work), [], "QEMU processes left behind");
  await rm(work, { recursive: true, force: true });
});

/** A file of the ext4 image, as debugfs reads it. */
const debugfsCat = (image: string, path: string) =>
  execFileSync("debugfs", ["-R", `cat ${path}`, image], { stdio: ["ignore", "pipe", "ignore"] }).toString();

const debugfsStat = (image: string, path: string) =>
  execFileSync("debugfs", ["-R", `stat ${path}`, image], { stdio: ["ignore", "pipe", "ignore"] }).toString();

let image = "";
// One hook: the work directory must exist before anything is built in it.
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-disk-writes-"));
  await fetchKernel({ arch: "amd64" });
  const add = join(work, "add");
  await mkdir(join(add, "run"), { recursive: true });
  await writeFile(join(add, "hosts"), IMAGE_HOSTS);
  await writeFile(join(add, "seed"), "TMP_SEED\n");
  await writeFile(join(add, "run", "marker"), "RUN_MARKER\n");
  image = join(work, "busybox.ext4");
  const fx = await busyboxFixture("amd64");
  const built = await runCli(
    [
      "build",
      fx.ociRef,
      "--add",
      `${join(add, "hosts")}:/etc/hosts`,
      "--add",
      `${join(add, "seed")}:/tmp/seed`,
      "--add",
      `${join(add, "run")}:/run/app`,
      "-o",
      image,
    ],
    env(),
  );
  assert.equal(built.code, 0, built.stderr);
});

describe("a disk root that is the image itself: the init writes none of it", {
  timeout: 2 * TEST_TIMEOUT_MS,
}, () => {
  test("the run's /etc/hosts goes over the image's; /tmp and /run start afresh each boot", async () => {
    // The image has /etc/hosts (a regular file) and no /etc/resolv.conf; run sets both
    // (QEMU's user network: address and resolver).
    const script = [
      "sed 's/^/HOSTS:/' /etc/hosts",
      "echo appended >> /etc/hosts",
      "ls /etc/resolv.conf 2>/dev/null || echo NO_RESOLV",
      "cat /tmp/seed /run/app/marker",
      "{ ls /tmp; ls /run/app; } | sed 's/^/LS:/'",
      "stat -c 'MODE:%n %a %u:%g' /tmp /run",
      "echo x > /tmp/made && echo y > /run/app/app.pid && echo WROTE",
    ].join("; ");
    for (const bootNo of [1, 2]) {
      const r = await runCli(["run", image, "--", "sh", "-c", script], env());
      assert.deepEqual(await qemusUsing(work), [], "QEMU still running after slimroot run ended");
      const out = `boot ${bootNo}:\n${r.stdout}\n${r.stderr}`;
      assert.equal(r.code, 0, out);
      const hosts = r.stdout.split("\n").filter((l) => l.startsWith("HOSTS:"));
      assert.ok(hosts.includes("HOSTS:10.0.2.15\tslimroot"), out);
      assert.ok(!hosts.some((l) => l.includes("imagehost")), out);
      assert.match(r.stdout, /^NO_RESOLV$/m, out);
      assert.match(r.stdout, /^slimroot-init: \/etc\/resolv.conf: left as the image has it/m, out);
      assert.match(r.stdout, /^TMP_SEED\nRUN_MARKER$/m, out);
      // Nothing the first boot wrote in /tmp or /run is there at the second.
      const ls = r.stdout.split("\n").filter((l) => l.startsWith("LS:"));
      assert.deepEqual(ls.sort(), ["LS:marker", "LS:seed"], out);
      assert.match(r.stdout, /^WROTE$/m, out);
      // The overlay's directory has the image's mode and owner (its upper one is made by the init).
      for (const dir of ["/tmp", "/run"]) {
        const mode = /Mode:\s+0*(\d+)/.exec(debugfsStat(image, dir))?.[1];
        assert.match(r.stdout, new RegExp(`^MODE:${dir} ${mode} 0:0$`, "m"), out);
      }
    }
    assert.equal(debugfsCat(image, "/etc/hosts"), IMAGE_HOSTS);
    assert.equal(debugfsCat(image, "/tmp/made"), "");
    assert.equal(debugfsCat(image, "/run/app/app.pid"), "");
    execFileSync("e2fsck", ["-fn", image], { stdio: "pipe" });
  });

  test("a read-only root without overlayfs: it stays read-only, the run's /etc/hosts still goes over", async () => {
    // The kernel's modules minus overlay: the init falls back to the bare read-only disk,
    // where it used to die writing /etc/hosts (EROFS).
    const k = await fetchKernel({ arch: "amd64" });
    const mods = join(work, "no-overlay");
    await mkdir(mods);
    for (const m of k.manifest.modules.filter((m) =>
      /^(virtio(_ring|_mmio|_blk|_net)?|(net_)?failover)$/.test(m.name),
    ))
      await copyFile(join(k.dir, m.file), join(mods, `${m.name}.ko`));
    const sum = createHash("sha256")
      .update(await readFile(image))
      .digest("hex");
    const script = [
      "sed 's/^/HOSTS:/' /etc/hosts",
      "touch /etc/new 2>/dev/null || echo ROOT_RO",
      "echo x > /tmp/x && echo > /run/y && echo SCRATCH_WRITABLE",
      "ls /tmp | sed 's/^/LS:/'",
    ].join("; ");
    const r = await runCli(
      ["run", image, "--read-only", "--kernel", k.dir, "--modules", mods, "--", "sh", "-c", script],
      env(),
    );
    const out = `${r.stdout}\n${r.stderr}`;
    assert.equal(r.code, 0, out);
    assert.match(
      r.stdout,
      /^slimroot-init: overlay on the read-only root: .*; the root stays read-only$/m,
      out,
    );
    assert.match(r.stdout, /^HOSTS:10\.0\.2\.15\tslimroot$/m, out);
    assert.match(r.stdout, /^ROOT_RO$/m, out);
    // No overlay for /tmp either: a tmpfs over the image's (its content hidden), writable.
    assert.match(r.stdout, /^slimroot-init: \/tmp: overlay: .*; a tmpfs hides the image's$/m, out);
    assert.match(r.stdout, /^SCRATCH_WRITABLE$/m, out);
    assert.deepEqual(
      r.stdout.split("\n").filter((l) => l.startsWith("LS:")),
      ["LS:x"],
      out,
    );
    assert.equal(
      createHash("sha256")
        .update(await readFile(image))
        .digest("hex"),
      sum,
    );
  });
});
