// slimroot snapshot and the resume of its file by run (issue 18 item 3). One snapshot is
// made (one boot: busybox serving 16 bytes of /dev/urandom and the guest's clock per
// connection, a read-only squashfs volume attached, a copy of the fetched kernel), then
// resumed twice at once, its RAM file unchanged by them; the refusals change one thing each
// and boot nothing. arm64 (-M virt) gets a snapshot of its own, resumed twice.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cp, link, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { identify } from "../src/artifact/identify.js";
import { readSnapshotHeader, snapshotHeaderFrame } from "../src/artifact/snapshot.js";
import { fetchKernel } from "../src/kernel/fetch.js";
import { freePort } from "../src/util/net.js";
import { STANDBY_LINE, STANDBY_SIGNAL } from "../src/vm/standby.js";
import { type RunningCli, runCli, startCli } from "./support/cli.js";
import { debianBusybox } from "./support/kernel.js";
import { qemusUsing } from "./support/qemu.js";

let work: string;
let snap: string;
let kernelDir: string;
let volume: string;
let made: { code: number; stderr: string };
let madeAt = 0;

/**
 * Waits until `since` is at least 10 s ago: a resumed guest whose clock nobody set would be
 * that far behind the host (its clock stood still while it was saved), which the 2 s check sees.
 */
const clockGap = (since: number) =>
  new Promise((r) => setTimeout(r, Math.max(0, since + 10_000 - Date.now())));

/** The init's one-line warnings if the reseed or the clock setting failed after a resume. */
const RESUME_WARNING = /slimroot-init: resume:/;

// Per connection: 16 random bytes in hex, then the guest's time (seconds).
const SERVE =
  'echo "head -c 16 /dev/urandom | od -An -tx1 | tr -d \\" \\\\n\\"; echo; date +%s" > /tmp/r; exec nc -ll -p 8080 -e sh /tmp/r';

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-snapshot-test-"));
  const busybox = await debianBusybox("amd64");
  const k = await fetchKernel({ arch: "amd64" });
  // A copy of the fetched kernel, so a test can take its file away.
  kernelDir = join(work, "kernel");
  await cp(k.dir, kernelDir, { recursive: true });
  const app = join(work, "app.cpio.gz");
  volume = join(work, "data.squashfs");
  for (const [out, args] of [
    [app, ["sh", "-c", SERVE]],
    [volume, ["true"]],
  ] as const) {
    const b = await runCli(["build", `bin:${busybox}`, "-o", out, "--", ...args]);
    assert.equal(b.code, 0, b.stderr);
  }
  snap = join(work, "app.snap");
  made = await runCli([
    "snapshot",
    app,
    "--kernel",
    kernelDir,
    "--volume",
    `${volume}:/data:ro`,
    "--probe",
    "tcp:8080",
    "-o",
    snap,
  ]);
  madeAt = Date.now();
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** One connection's answer (the whole of it), or undefined when nothing answers yet. */
function ask(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    let text = "";
    const s = connect(port, "127.0.0.1");
    s.setTimeout(3000, () => s.destroy());
    s.on("data", (d) => {
      text += d;
    });
    s.on("error", () => resolve(undefined));
    s.on("close", () => resolve(text.includes("\n") ? text : undefined));
  });
}

async function answer(
  port: number,
  vm: RunningCli,
): Promise<{ random: string; clock: number; host: number }> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const a = await ask(port);
    const m = a && /^([0-9a-f]{32})\s*\n(\d+)/.exec(a);
    if (m) return { random: m[1]!, clock: Number(m[2]), host: Date.now() / 1000 };
    if (Date.now() > deadline) throw new Error(`no answer on ${port}: ${vm.stderr.slice(-500)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const sha256Of = async (file: string) =>
  createHash("sha256")
    .update(await readFile(file))
    .digest("hex");

test("snapshot writes the state file that identify knows and the RAM file beside it, naming kernel, RAM and disks by digest", {
  timeout: 600_000,
}, async () => {
  assert.equal(made.code, 0, made.stderr);
  assert.match(
    made.stderr,
    /snapshot .*app\.snap: \d+ KiB of state and its RAM file .*app\.snap\.ram: [\d.]+ MiB on disk \(guest RAM \d+ MiB/,
  );
  // Nothing else beside them: the RAM file's temp name was renamed, the state's too.
  assert.deepEqual(
    (await readdir(work)).filter((n) => n.startsWith("app.snap") || n.startsWith(".app.snap")).sort(),
    ["app.snap", "app.snap.ram"],
  );
  const a = await identify(snap);
  assert.equal(a.kind, "snapshot");
  if (a.kind !== "snapshot") return;
  // The RAM file: the guest's RAM in size, sparse on disk (pages never written are holes),
  // and the state file holds no RAM (a few MiB at most).
  const ram = await stat(`${snap}.ram`);
  assert.equal(a.header.ram.file, "app.snap.ram");
  assert.equal(ram.size, a.header.memory.guestMiB << 20);
  assert.ok(ram.blocks * 512 < ram.size / 2, `${ram.blocks * 512} bytes allocated of ${ram.size}`);
  assert.ok(a.bytes < 4 << 20, `state file ${a.bytes} bytes`);
  // No larger than the RAM in use at the freeze (the guest's RAM less MemFree).
  const m = a.header.memory;
  assert.ok(m.inUseBytes > 0 && m.inUseBytes < ram.size, `${m.inUseBytes} bytes in use`);
  assert.ok(ram.blocks * 512 <= m.inUseBytes, `${ram.blocks * 512} bytes allocated, ${m.inUseBytes} in use`);
  assert.ok(a.header.kernel.path.startsWith(`${kernelDir}/vmlinuz-`), a.header.kernel.path);
  assert.match(a.header.kernel.sha256, /^[0-9a-f]{64}$/);
  assert.deepEqual(
    a.header.disks.map((d) => d.path),
    [volume],
  );
  assert.match(a.header.qemu.version, /QEMU emulator version/);
});

/** Until `vm` says it stands by (run --standby); throws if it ends first. */
async function standingBy(vm: RunningCli): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!vm.stderr.includes(`${STANDBY_LINE}\n`)) {
    if (vm.child.exitCode !== null || Date.now() > deadline)
      throw new Error(`no standby: ${vm.stderr.slice(-500)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Resumes `file` twice at once, 10 s or more after `madeAt`, and checks each pair of answers
 * (`rounds` connections to each): all random bytes different, each guest's clock within 2 s
 * of the host's (`date +%s` truncates: at most 1 s behind), no resume warning from the init,
 * and the RAM file as it was (both map it private: neither writes it). `standby`: both are
 * started with --standby, stand by with their ports closed, and go on the signal.
 */
async function twoResumes(
  file: string,
  madeAt: number,
  rounds: number,
  o: { timeline?: boolean; standby?: boolean; probe?: string } = {},
): Promise<RunningCli[]> {
  await clockGap(madeAt);
  const ramBefore = await sha256Of(`${file}.ram`);
  const ports = [await freePort(), await freePort()];
  const vms = ports.map((p, i) =>
    startCli([
      "run",
      file,
      ...(o.timeline && i === 0 ? ["--timeline"] : []),
      ...(o.probe && i === 0 ? ["--probe", o.probe] : []),
      ...(o.standby ? ["--standby"] : []),
      "-p",
      `127.0.0.1:${p}:8080`,
    ]),
  );
  const seen: string[] = [];
  try {
    if (o.standby) {
      await Promise.all(vms.map(standingBy));
      // Loaded and paused, not yet reachable: the ports are forwarded only once the guest goes on.
      for (const p of ports) assert.equal(await ask(p), undefined, `port ${p} answered before the signal`);
      for (const vm of vms) vm.child.kill(STANDBY_SIGNAL);
    }
    for (let i = 0; i < rounds; i++) {
      const answers = await Promise.all(ports.map((p, n) => answer(p, vms[n]!)));
      for (const a of answers) {
        seen.push(a.random);
        assert.ok(Math.abs(a.clock - a.host) <= 2, `guest clock ${a.clock}, host ${a.host}`);
      }
    }
  } finally {
    for (const vm of vms) vm.child.kill("SIGTERM");
    await Promise.all(vms.map((vm) => vm.exited));
  }
  assert.equal(new Set(seen).size, seen.length, seen.join(" "));
  for (const vm of vms) assert.doesNotMatch(vm.stdout, RESUME_WARNING);
  assert.equal(await sha256Of(`${file}.ram`), ramBefore, "a resume wrote the RAM file");
  return vms;
}

test("two resumes of one snapshot serve at once, each with its own random bytes and the host's clock", {
  timeout: 600_000,
}, async () => {
  assert.equal(made.code, 0, made.stderr);
  // Both keep serving: each connection fresh bytes. The first says where its time went.
  const [timed] = await twoResumes(snap, madeAt, 2, { timeline: true });
  const steps = [
    /slimroot's process start until run began/,
    /the snapshot's header, the VM's directory, the ports/,
    /QEMU's start, until its QMP socket answered/,
    /waiting for the checks/,
    /loading the saved state/,
    /cont, the init's reseed and clock, the ports forwarded/,
  ];
  assert.match(timed!.stderr, /slimroot: resume timeline/);
  for (const s of steps)
    assert.match(timed!.stderr, new RegExp(`slimroot:\\s+at\\s+-?\\d+ ms\\s+\\d+ ms\\s+${s.source}`));
});

test("run --standby: two standbys of one snapshot, loaded with their ports closed, go on SIGUSR2 as two machines", {
  timeout: 600_000,
}, async () => {
  assert.equal(made.code, 0, made.stderr);
  // The first also says when its probe passed (a tcp: probe needs guest port 1 too: run forwards
  // a free host port for it), and its timeline ends there.
  const [timed] = await twoResumes(snap, madeAt, 1, { timeline: true, standby: true, probe: "tcp:8080" });
  assert.match(
    timed!.stderr,
    /slimroot:\s+at\s+\d+ ms\s+\d+ ms\s+standing by, loaded and paused, until SIGUSR2/,
  );
  assert.match(
    timed!.stderr,
    /^slimroot: ready: tcp:8080 passed \d+\.\d\d s after slimroot started \(\d+\.\d\d s after the VMM was spawned, \d+\.\d\d s after SIGUSR2\)$/m,
  );
  assert.match(
    timed!.stderr,
    /slimroot:\s+at\s+\d+ ms\s+\d+ ms\s+the app through its forwarded port, until the probe first passed/,
  );
  assert.match(timed!.stderr, /from SIGUSR2 until the probe passed: \d+ ms/);
});

test("run --standby: a stop while standing by ends it at once; not for an image that is no snapshot", {
  timeout: 300_000,
}, async () => {
  assert.equal(made.code, 0, made.stderr);
  const vm = startCli(["run", snap, "--standby", "-p", `127.0.0.1:${await freePort()}:8080`]);
  await standingBy(vm);
  const t = Date.now();
  vm.child.kill("SIGTERM");
  // A paused guest cannot take Ctrl-Alt-Del: not the 10 s grace, but at once; SIGTERM's status.
  assert.equal(await vm.exited, 143, vm.stderr);
  assert.ok(Date.now() - t < 5000, `${Date.now() - t} ms to stop`);
  assert.deepEqual(await qemusUsing(work), []);
  const r = await runCli(["run", volume, "--standby"]);
  assert.equal(r.code, 125, r.stderr);
  assert.match(r.stderr, /^slimroot: --standby: .*data\.squashfs is not a snapshot/);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
});

/** A refused resume: exit 125, one line on stderr matching `why`, and no QEMU started. */
async function refused(file: string, why: RegExp): Promise<void> {
  const r = await runCli(["run", file, "-p", `127.0.0.1:${await freePort()}:8080`]);
  assert.equal(r.code, 125, r.stderr);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert.match(r.stderr, why);
  assert.deepEqual(await qemusUsing(work), []);
}

test("a snapshot whose disk changed is refused before booting", { timeout: 300_000 }, async () => {
  assert.equal(made.code, 0, made.stderr);
  const saved = await readFile(volume);
  const changed = Buffer.from(saved);
  const last = changed.length - 1;
  changed.writeUInt8(changed.readUInt8(last) ^ 0xff, last);
  await writeFile(volume, changed);
  try {
    await refused(snap, /its disk .*data\.squashfs changed since the snapshot was made/);
  } finally {
    await writeFile(volume, saved);
  }
});

test("a snapshot whose kernel file is missing is refused before booting", { timeout: 300_000 }, async () => {
  assert.equal(made.code, 0, made.stderr);
  const { header } = await readSnapshotHeader(snap);
  await rename(header.kernel.path, `${header.kernel.path}.away`);
  try {
    await refused(snap, /its kernel .* is missing/);
  } finally {
    await rename(`${header.kernel.path}.away`, header.kernel.path);
  }
});

test("a snapshot whose RAM file is missing or changed is refused before booting", {
  timeout: 300_000,
}, async () => {
  assert.equal(made.code, 0, made.stderr);
  const ram = `${snap}.ram`;
  await rename(ram, `${ram}.away`);
  try {
    await refused(snap, /app\.snap: its RAM file .*app\.snap\.ram is missing; the snapshot cannot resume/);
  } finally {
    await rename(`${ram}.away`, ram);
  }
  // One non-zero byte in a page the guest never wrote (a hole): the same size, another RAM.
  const saved = await readFile(ram);
  const changed = Buffer.from(saved);
  const last = changed.length - 1;
  changed.writeUInt8(changed.readUInt8(last) ^ 0x01, last);
  await writeFile(ram, changed);
  try {
    await refused(snap, /its RAM file .*app\.snap\.ram changed since the snapshot was made/);
  } finally {
    await writeFile(ram, saved);
  }
});

test("a cut-off or damaged snapshot file, or a RAM file of another size, is refused before booting", {
  timeout: 300_000,
}, async () => {
  assert.equal(made.code, 0, made.stderr);
  const dir = join(work, "damaged");
  await mkdir(dir, { recursive: true });
  const copy = join(dir, "app.snap");
  const { streamOffset } = await readSnapshotHeader(snap);
  const whole = await readFile(snap);
  // The RAM file beside it, as a link: nothing of it is written.
  await link(`${snap}.ram`, `${copy}.ram`);
  try {
    // Cut off: QEMU read it for a minute before, then failed naming nothing.
    await writeFile(copy, whole.subarray(0, streamOffset + 100));
    await refused(
      copy,
      /app\.snap: damaged: its saved state is 100 bytes, \d+ were saved \(cut off or added to\); make the snapshot again/,
    );
    const flipped = Buffer.from(whole);
    flipped.writeUInt8(flipped.readUInt8(whole.length - 4) ^ 0xff, whole.length - 4);
    await writeFile(copy, flipped);
    await refused(
      copy,
      /app\.snap: damaged: its saved state's sha256 is [0-9a-f]{12}…, [0-9a-f]{12}… was saved; make the snapshot again/,
    );
    // A RAM file of another size: its size said as a size.
    await writeFile(copy, whole);
    await rm(`${copy}.ram`);
    await writeFile(`${copy}.ram`, "");
    await refused(
      copy,
      /its RAM file .*app\.snap\.ram changed since the snapshot was made \(0 bytes, saved with \d+\)/,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a snapshot of the earlier format (the RAM inside the file) is refused before booting", {
  timeout: 300_000,
}, async () => {
  assert.equal(made.code, 0, made.stderr);
  const { header, streamOffset } = await readSnapshotHeader(snap);
  const old = join(work, "format1.snap");
  const { ram: _r, ...rest } = header;
  const body = (await readFile(snap)).subarray(streamOffset);
  await writeFile(
    old,
    Buffer.concat([snapshotHeaderFrame({ ...rest, format: 1 } as unknown as typeof header), body]),
  );
  await refused(
    old,
    /format1\.snap: a snapshot of an earlier slimroot \(format 1, the RAM inside the file\).*make it again/,
  );
});

test("a snapshot that fails leaves neither file, nor a temp file beside them", {
  timeout: 300_000,
}, async () => {
  // The volume's app is `true`: it ends before the probe can pass.
  const failed = join(work, "failed.snap");
  const r = await runCli(["snapshot", volume, "--kernel", kernelDir, "--probe", "tcp:8080", "-o", failed]);
  assert.equal(r.code, 125, r.stderr);
  assert.match(r.stderr, /no snapshot/);
  assert.deepEqual(
    (await readdir(work)).filter((n) => n.includes("failed.snap")),
    [],
  );
});

test("a snapshot made by another QEMU version is refused before booting", { timeout: 300_000 }, async () => {
  assert.equal(made.code, 0, made.stderr);
  const { header, streamOffset } = await readSnapshotHeader(snap);
  const other = join(work, "other-qemu.snap");
  const body = (await readFile(snap)).subarray(streamOffset);
  const edited = { ...header, qemu: { ...header.qemu, version: "QEMU emulator version 6.0.0" } };
  await writeFile(other, Buffer.concat([snapshotHeaderFrame(edited), body]));
  await refused(other, /made by QEMU emulator version 6\.0\.0, this host has/);
});

test("arm64 (-M virt): a snapshot resumes twice at once, two machines", { timeout: 600_000 }, async () => {
  const busybox = await debianBusybox("arm64");
  await fetchKernel({ arch: "arm64" });
  const app = join(work, "app-arm64.cpio.gz");
  const b = await runCli(["build", `bin:${busybox}`, "-o", app, "--", "sh", "-c", SERVE]);
  assert.equal(b.code, 0, b.stderr);
  const file = join(work, "app-arm64.snap");
  const s = await runCli(["snapshot", app, "--probe", "tcp:8080", "-o", file]);
  assert.equal(s.code, 0, s.stderr);
  await twoResumes(file, Date.now(), 1);
});
