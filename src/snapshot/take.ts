/**
 * `slimroot snapshot IMAGE --probe PROBE -o APP.snap`: boots the image as `run` does (one boot
 * plan, read-only disks, the control channel), waits until the probe passes, has the guest
 * init stop every process (so none runs again before a resume has made the VM a machine of
 * its own, init/control.c), pauses the VM and saves its state with QEMU's migration to a unix
 * socket we read, compressed by zstd, behind the header (artifact/snapshot.ts). The guest's
 * RAM is a file the whole time (QEMU maps it shared), so the stream leaves it out
 * (x-ignore-shared) and the RAM file is the snapshot's other half. Both are written through
 * output/: the RAM file is the temp file beside APP.snap.ram that QEMU is given, then both are
 * renamed into place together, or neither.
 */
import { execFile, spawn } from "node:child_process";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { Readable, Writable } from "node:stream";
import { finished } from "node:stream/promises";
import {
  ramFileOf,
  SNAPSHOT_FORMAT,
  type SnapshotHeader,
  snapshotHeaderFrame,
} from "../artifact/snapshot.js";
import { writeFilesAtomically } from "../output/atomic.js";
import { checkOutputs } from "../output/output.js";
import { fileSha256 } from "../output/why.js";
import { type Probe, portMap, probeForwards, waitForProbe } from "../trace/probe.js";
import { UserError } from "../util/errors.js";
import { hostExecutable } from "../util/host-path.js";
import { requireTools } from "../util/tools.js";
import { ControlChannel } from "../vm/control.js";
import {
  pauseBody,
  snapshotCreateBody,
  snapshotLoadBody,
  snapshotScript,
} from "../vm/firecracker-snapshot.js";
import type { BootPlan } from "../vm/plan.js";
import { ignoreSharedRam, Qmp } from "../vm/qmp.js";
import { nameByDigest, qemuVersion, ramDigest } from "../vm/resume.js";
import { type RunRequest, runImage } from "../vm/run.js";

export interface SnapshotRequest
  extends Omit<RunRequest, "attached" | "dryRun" | "json" | "outDir" | "readOnly" | "control"> {
  output: string;
  probe: Probe;
  /** How long the app gets to pass the probe. */
  readyTimeoutMs: number;
}

export interface SnapshotResult {
  header: SnapshotHeader;
  /** The snapshot file's bytes. */
  fileBytes: number;
  /** The RAM file's path. */
  ramFile: string;
  /** Seconds from QEMU's start until the probe passed. */
  readySeconds: number;
}

const FREEZE_MS = 30_000;
const MIGRATE_MS = 300_000;

/** The migration stream, read from a unix socket QEMU connects to, into zstd, into `file`. */
async function streamSink(sock: string, file: string): Promise<{ server: Server; done: Promise<void> }> {
  let resolveDone: () => void = () => {};
  let rejectDone: (e: Error) => void = () => {};
  const done = new Promise<void>((res, rej) => {
    resolveDone = res;
    rejectDone = rej;
  });
  const server = createServer((conn) => {
    server.close(); // one stream
    const zstd = spawn("zstd", ["-q", "-3", "-c"], { stdio: ["pipe", "pipe", "inherit"] });
    const out = createWriteStream(file, { mode: 0o600 });
    conn.pipe(zstd.stdin);
    zstd.stdout.pipe(out);
    zstd.on("error", rejectDone);
    zstd.on("close", (code) => {
      if (code !== 0) rejectDone(new Error(`zstd exit status ${code} while saving the VM`));
      else finished(out).then(resolveDone, rejectDone);
    });
  });
  await new Promise<void>((res, rej) => {
    server.once("error", rej);
    server.listen(sock, () => res());
  });
  // Awaited only once QEMU says the migration completed; a failure before that is QEMU's to report.
  done.catch(() => {});
  return { server, done };
}

/** Pauses the frozen VM and saves its state (its RAM is the RAM file). */
async function saveVm(qmpSocket: string, sinkSocket: string): Promise<void> {
  const qmp = await Qmp.connect(qmpSocket);
  try {
    await qmp.execute("stop");
    await ignoreSharedRam(qmp);
    await qmp.execute("migrate", { uri: `unix:${sinkSocket}` });
    const deadline = Date.now() + MIGRATE_MS;
    for (;;) {
      const m = (await qmp.execute("query-migrate")) as {
        status?: string;
        "error-desc"?: string;
      };
      if (m.status === "completed") return;
      if (m.status === "failed" || m.status === "cancelled")
        throw new Error(`saving the VM failed: ${m["error-desc"] ?? m.status}`);
      if (Date.now() > deadline) throw new Error("saving the VM took too long");
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    qmp.close();
  }
}

/** A file a resume needs again (kernel, disks), named by absolute path and digest. */
const named = (path: string) => nameByDigest(resolve(path));

/**
 * `--vmm firecracker`: no snapshot can be made here (Firecracker needs KVM); the VM's files
 * (run --dry-run's) go to the directory `output`, with the API request bodies that make and
 * load a snapshot and a script that sends them where Firecracker and KVM exist.
 */
export async function firecrackerSnapshotFiles(req: SnapshotRequest): Promise<string> {
  let dir = "";
  await runImage({
    ...req,
    dryRun: true,
    outDir: req.output,
    readOnly: true,
    stdout: new Writable({ write: (_c, _e, cb) => cb() }),
    moreFiles: (d) => {
      dir = resolve(d);
      return [
        { name: "snapshot-pause.json", text: `${JSON.stringify(pauseBody())}\n` },
        { name: "snapshot-create.json", text: `${JSON.stringify(snapshotCreateBody(dir), null, 2)}\n` },
        { name: "snapshot-load.json", text: `${JSON.stringify(snapshotLoadBody(dir), null, 2)}\n` },
        { name: "snapshot.sh", text: snapshotScript(dir), mode: 0o755 },
      ];
    },
  });
  return dir;
}

export async function takeSnapshot(req: SnapshotRequest): Promise<SnapshotResult> {
  if ((req.vmm ?? "qemu") !== "qemu")
    throw new UserError("snapshot: a file is made by QEMU only; --vmm firecracker writes a directory");
  const rw = (req.volumes ?? []).find((v) => !v.readOnly);
  if (rw)
    throw new UserError(
      `--volume ${rw.file}: a snapshot takes read-only volumes only (add :ro); resumes would share the disk`,
    );
  // Never over what the VM reads (a resume reads the kernel and the disks again).
  const inputs = [
    { path: req.image, what: req.image },
    ...(req.kernel ? [{ path: req.kernel, what: `--kernel ${req.kernel}` }] : []),
    ...(req.volumes ?? []).map((v) => ({ path: v.file, what: `--volume ${v.file}` })),
  ];
  const ramTarget = ramFileOf(req.output);
  await checkOutputs(
    [
      { path: req.output, why: false },
      { path: ramTarget, why: false, label: `-o ${req.output} (its RAM file)` },
    ],
    inputs,
  );
  requireTools("snapshot", ["zstd"]);
  // The state stream holds no RAM (a few MiB at most): the temp directory will do.
  const work = await mkdtemp(join(tmpdir(), "slimroot-snapshot-"));
  try {
    const stream = join(work, "state.zst");
    let made: { header: SnapshotHeader; readySeconds: number } | undefined;
    const [, fileBytes] = await writeFilesAtomically([
      {
        // QEMU creates the temp file (mem-path) and the guest writes it: it is the guest's RAM.
        target: ramTarget,
        write: async (tmp) => {
          made = await bootAndSave(req, tmp, work, stream);
          return undefined;
        },
      },
      {
        target: req.output,
        mode: 0o644,
        source: () => Readable.from(concatStreams(snapshotHeaderFrame(made!.header), stream)),
      },
    ]);
    const { header, readySeconds } = made!;
    return {
      header,
      fileBytes: fileBytes ?? (await stat(req.output)).size,
      ramFile: resolve(ramTarget),
      readySeconds,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Boots the image with its RAM in `ramTmp`, waits for the probe, freezes and saves the VM
 * (the state to `stream`), and returns the header once QEMU has ended (the file is then the
 * RAM as it was saved).
 */
async function bootAndSave(
  req: SnapshotRequest,
  ramTmp: string,
  work: string,
  stream: string,
): Promise<{ header: SnapshotHeader; readySeconds: number }> {
  const sink = await streamSink(join(work, "migrate.sock"), stream);
  const forwards = await probeForwards([req.probe], req.forwards);
  const ports = portMap(forwards);
  let saved: { named: NamedPart; memMiB: number; usedKib: number } | undefined;
  let readySeconds = 0;
  const started = Date.now();
  const code = await runImage({
    ...req,
    forwards,
    dryRun: false,
    readOnly: true,
    control: true,
    ramFile: ramTmp,
    attached: async (vm, plan, exited) => {
      await waitForProbe(req.probe, ports, Date.now() + req.readyTimeoutMs, () =>
        exited() ? "the VM ended" : undefined,
      );
      readySeconds = (Date.now() - started) / 1000;
      const ctl = await ControlChannel.connect(vm.channel);
      let usedKib = 0;
      try {
        usedKib = inUseKib(await ctl.request("freeze", "frozen", FREEZE_MS), plan.memory.mib);
      } finally {
        ctl.close();
      }
      await saveVm(vm.qmpSocket, join(work, "migrate.sock"));
      await sink.done;
      // Named now: the initrd's parts may be files of this run's, gone once it ends.
      saved = { named: await headerOf(plan, req.report?.key), memMiB: plan.memory.mib, usedKib };
    },
  }).finally(() => sink.server.close());
  if (!saved) throw new UserError(`the app exited with status ${code} before the probe passed; no snapshot`);
  await digHoles(ramTmp);
  const digest = await ramDigest(ramTmp);
  const allocated = (await stat(ramTmp)).blocks * 512;
  const header: SnapshotHeader = {
    ...saved.named,
    ram: { file: basename(ramFileOf(req.output)), sha256: digest.sha256, bytes: digest.bytes },
    memory: {
      guestMiB: saved.memMiB,
      inUseBytes: saved.usedKib * 1024,
      nonZeroBytes: digest.nonZeroBytes,
      ramFileBytes: allocated,
      streamBytes: (await stat(stream)).size,
    },
    streamSha256: await fileSha256(stream),
  };
  return { header, readySeconds };
}

/**
 * Makes the RAM file's zero pages holes (`fallocate --dig-holes`, util-linux): pages the guest
 * zeroed when it freed them (init_on_free) take no disk. Without the tool the file only stays
 * larger on disk; its content, and so its digest, is the same.
 */
async function digHoles(file: string): Promise<void> {
  if (!hostExecutable("fallocate")) return;
  await new Promise<void>((done) => execFile("fallocate", ["--dig-holes", file], () => done()));
}

async function* concatStreams(first: Buffer, file: string): AsyncGenerator<Buffer> {
  yield first;
  for await (const chunk of createReadStream(file)) yield chunk as Buffer;
}

/**
 * The guest's RAM in use from the init's `frozen U F` (KiB: MemTotal - MemFree, MemFree): the
 * RAM less MemFree, since the kernel's own pages (its image, the page map: outside MemTotal) are
 * in use and in the RAM file too. An init of an earlier slimroot answers U alone.
 */
export function inUseKib(reply: string, guestMiB: number): number {
  const [used, free] = reply.split(" ").map(Number);
  if (free !== undefined && Number.isSafeInteger(free) && free <= guestMiB * 1024)
    return guestMiB * 1024 - free;
  return Number.isSafeInteger(used) ? used! : 0;
}

/** The header but the RAM and its figures (known once QEMU has ended). */
type NamedPart = Omit<SnapshotHeader, "ram" | "memory">;

/** The header: the plan (paths absolute, forwards left out), the files by digest, the QEMU version. */
async function headerOf(plan: BootPlan, reportKey: string | undefined): Promise<NamedPart> {
  if (!plan.reportKey && !reportKey) throw new Error("snapshot: the boot has no report key");
  const kernel = await named(plan.kernel.path);
  const disks = await Promise.all(plan.disks.map((d) => named(d.path)));
  const initrd = await Promise.all(
    plan.initrd.map(async (p) =>
      "path" in p ? { kind: p.kind, ...(await named(p.path)) } : { kind: p.kind, bytes: p.bytes },
    ),
  );
  // The RAM file's temp name is not the plan's to keep: a resume maps the RAM file (resume.ts).
  const { network: _n, stop: _s, notes: _o, reportKey: _k, ram: _r, ...rest } = plan;
  const saved = {
    ...rest,
    kernel: { ...plan.kernel, path: kernel.path },
    disks: plan.disks.map((d, i) => ({ ...d, path: disks[i]!.path })),
  };
  return {
    format: SNAPSHOT_FORMAT,
    created: new Date().toISOString(),
    arch: plan.arch,
    qemu: await qemuVersion(plan.arch),
    kernel,
    disks,
    initrd,
    plan: saved as unknown as Record<string, unknown>,
    reportKey: (plan.reportKey ?? reportKey)!,
  };
}
