// A tcp: probe without EXPECT must wait for the app, not for QEMU: its user network holds a
// forwarded connection open while the guest is still booting, which once made the probe pass
// for an app that never listens. Booted for real (busybox as the app, build's verification).
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fetchKernel } from "../src/kernel/fetch.js";
import { runCli } from "./support/cli.js";
import { debianBusybox } from "./support/kernel.js";

let work: string;
let busybox: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-probe-tcp-"));
  busybox = await debianBusybox("amd64");
  await fetchKernel({ arch: "amd64" });
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

test("tcp:PORT fails for an app that never listens", { timeout: 300_000 }, async () => {
  const out = join(work, "never.cpio.gz");
  const b = await runCli([
    "build",
    `bin:${busybox}`,
    "--probe",
    "tcp:1234",
    "--verify-timeout",
    "20s",
    "-o",
    out,
    "--",
    "sleep",
    "600",
  ]);
  assert.equal(b.code, 1, b.stderr);
  assert.match(b.stderr, /probe tcp:1234: still failing when the time ran out/);
  assert.equal(existsSync(out), false);
});

test("tcp:PORT passes once the app listens", { timeout: 300_000 }, async () => {
  const out = join(work, "listens.cpio.gz");
  const b = await runCli([
    "build",
    `bin:${busybox}`,
    "--probe",
    "tcp:1234",
    "-o",
    out,
    "--",
    "httpd",
    "-f",
    "-p",
    "1234",
  ]);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout + b.stderr, /verified: tcp:1234 passed/);
  assert.equal(existsSync(out), true);
});
