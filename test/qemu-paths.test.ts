// Issue 17 item 5: a host path with a comma reaches QEMU as that path. Inside a `-opt
// a=b,c=d` value QEMU reads ",," as one comma; -kernel and -initrd take their argument whole.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fetchKernel } from "../src/kernel/fetch.js";
import { hostExecutable } from "../src/util/host-path.js";
import { qemuCommand, type VmConfig } from "../src/vm/qemu.js";

const at = (args: string[], flag: string) => args[args.indexOf(flag) + 1];

test("QEMU command line: a path with a comma is doubled inside option values and whole elsewhere", () => {
  const c: VmConfig = {
    arch: "amd64",
    machine: "pc",
    accel: "tcg",
    kernel: "/a,b/vmlinuz",
    initrd: "/a,b/initrd",
    memMiB: 256,
    cpus: 1,
    forwards: [],
    qmpSocket: "/a,b/qmp.sock",
    drives: [
      { file: "/a,b/root.ext4", readOnly: true },
      { file: "nbd:x.ext4", readOnly: false },
    ],
  };
  const args = qemuCommand(c);
  assert.equal(at(args, "-kernel"), "/a,b/vmlinuz");
  assert.equal(at(args, "-initrd"), "/a,b/initrd");
  assert.equal(at(args, "-qmp"), "unix:/a,,b/qmp.sock,server=on,wait=off");
  const drives = args.filter((_, i) => args[i - 1] === "-drive");
  assert.match(drives[0]!, /^file=\/a,,b\/root\.ext4,format=raw,/);
  // A relative name is made absolute: "nbd:" is then part of a file name, not a protocol.
  assert.ok(drives[1]!.startsWith(`file=${join(process.cwd(), "nbd:x.ext4")},format=raw,`), drives[1]);
});

test("QEMU opens the kernel, initrd, disk and QMP socket in a directory whose name has a comma", {
  timeout: 60_000,
}, async (t) => {
  if (!hostExecutable("qemu-system-x86_64")) return t.skip("qemu-system-x86_64 is not installed");
  const k = await fetchKernel({ arch: "amd64" });
  const dir = await mkdtemp(join(tmpdir(), "slimroot-q,comma-"));
  try {
    await symlink(join(k.dir, k.manifest.kernel), join(dir, "vmlinuz"));
    await writeFile(join(dir, "initrd"), Buffer.alloc(512));
    await writeFile(join(dir, "disk,1.img"), Buffer.alloc(1 << 20));
    const args = qemuCommand({
      arch: "amd64",
      machine: "pc",
      accel: "tcg",
      kernel: join(dir, "vmlinuz"),
      initrd: join(dir, "initrd"),
      memMiB: 256,
      cpus: 1,
      forwards: [],
      qmpSocket: join(dir, "qmp.sock"),
      drives: [{ file: join(dir, "disk,1.img"), readOnly: true }],
    });
    // -S: QEMU opens everything, then waits before running the guest.
    const qemu = spawn(args[0]!, [...args.slice(1), "-S"], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    qemu.stderr.on("data", (d: Buffer) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => qemu.on("close", resolve));
    try {
      const deadline = Date.now() + 30_000;
      while (!existsSync(join(dir, "qmp.sock")) && qemu.exitCode === null && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      assert.equal(qemu.exitCode, null, `QEMU refused the command line: ${stderr}`);
      assert.ok(existsSync(join(dir, "qmp.sock")), "the QMP socket is where it was asked for");
    } finally {
      qemu.kill();
      await exited;
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
