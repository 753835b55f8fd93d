/**
 * `slimroot run`: boots an image under a VMM (QEMU or Firecracker, see launcher.ts) with its
 * app's console on our stdout and exits with the app's status. See docs/run.md for the exit
 * codes and the stop sequence.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostArch } from "../arch/arch.js";
import { artifactArch, describe, identify } from "../artifact/identify.js";
import { kernelArch } from "../kernel/resolve.js";
import { OutputDir } from "../output/dir.js";
import type { InputPath } from "../output/output.js";
import { UserError } from "../util/errors.js";
import { hostExecutable } from "../util/host-path.js";
import { shellQuote } from "../util/shell.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";
import { requireTools } from "../util/tools.js";
import { ConsoleWatcher } from "./console.js";
import { planDisks, type VolumeSpec } from "./disks.js";
import { firecrackerLauncher } from "./firecracker-launcher.js";
import { type Launch, type Launcher, RunFailure, type Vmm, type VmRequest } from "./launcher.js";
import { qemuBinary } from "./qemu.js";
import { qemuLauncher } from "./qemu-launcher.js";
import { GuestReport } from "./report.js";

export { RunFailure };

/** Exit statuses of `slimroot run` besides the app's own. */
export const EXIT_FAILED = 125;
export const EXIT_TIMEOUT = 124;
export const EXIT_KILLED = 137;

const LAUNCHERS: Record<Vmm, Launcher> = { qemu: qemuLauncher, firecracker: firecrackerLauncher };

export interface RunRequest extends VmRequest {
  /** The VMM (default qemu). */
  vmm?: Vmm;
  timeoutMs?: number;
  /** How long the app gets to stop after SIGTERM/SIGINT or the timeout, before the VMM is killed. */
  stopGraceMs: number;
  dryRun: boolean;
  /** With dryRun: the directory the VM's files go to (default: a temp directory, kept). */
  outDir?: string;
  /** More disks (`--volume FILE:/path[:ro]`). */
  volumes?: readonly VolumeSpec[];
  /** Never write the image: an ext4 root is mounted read-only under a tmpfs overlay, as erofs and squashfs always are. */
  readOnly?: boolean;
  /**
   * Aborting it stops the app gracefully: Ctrl-Alt-Del, which the init turns into SIGTERM for
   * the app, then the VMM is killed after the grace period. A number as the abort reason is
   * the status to report if the VM ends without an exit report (default 143, as for SIGTERM).
   */
  stop?: AbortSignal;
  /** Aborting it kills the VMM at once. */
  kill?: AbortSignal;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Receives the init's report (its key goes to the guest); default: a fresh one. */
  report?: GuestReport;
}

/** Runs the image; resolves with the exit status for `slimroot run`. */
export async function runImage(req: RunRequest): Promise<number> {
  if (req.outDir !== undefined && !req.dryRun) throw new UserError("-o DIR: only with --dry-run");
  // A kernel file as the image carries its app (kernel build --embed): no initrd to read.
  const image = await identify(req.image, { embedded: false });
  if (image.kind === "list")
    throw new RunFailure(
      `${req.image}: ${describe(image)} is for kernel build --embed; run an initramfs or a disk`,
    );
  const embedded = image.kind === "kernel" ? image : undefined;
  if (embedded && (req.vmm ?? "qemu") !== "qemu")
    throw new RunFailure(`${req.image} is a kernel with its app built in: only QEMU boots it so far`);
  const root = image.kind === "disk" ? image.identity : undefined;
  // A disk's: the architecture of the kernel given, else of its /init, else of the host.
  const arch = embedded
    ? embedded.arch
    : root
      ? req.kernel
        ? await kernelArch(req.kernel)
        : (image.arch ?? hostArch() ?? "amd64")
      : artifactArch(image);
  // The VMM is run last, after the kernel and initrd are ready: said missing at once instead.
  // (Firecracker is no Debian package: its launcher's preflight says where to get it.)
  if (!req.dryRun && (req.vmm ?? "qemu") === "qemu") requireTools("run", [qemuBinary(arch)]);
  const plan = await planDisks(req.image, root, Boolean(req.readOnly), req.volumes ?? []);
  if (plan.disks.length) req = { ...req, disks: plan.disks, diskBoot: plan };
  // This boot's key: only a report that opens with it is the init's (report.ts).
  const report = req.report ?? new GuestReport();
  req = { ...req, report, reportKey: report.key };
  const scratch = await mkdtemp(join(tmpdir(), "slimroot-run-"));
  // Removed by the CLI's exit paths too (a closed stdout ends the process at once).
  trackTempPath(scratch);
  let keep = false;
  let out: OutputDir | undefined;
  try {
    // The VM's files: in -o DIR (new, empty or an earlier dry run's, never over an input) or the scratch.
    out = await OutputDir.open(req.outDir ?? scratch, "-o", runInputs(req));
    const launch = await LAUNCHERS[req.vmm ?? "qemu"].prepare(req, arch, out, scratch);
    await out.commit();
    const notes = () => {
      for (const n of launch.notes) req.stderr.write(`slimroot: ${n}\n`);
    };
    if (req.dryRun) {
      keep = req.outDir === undefined;
      notes();
      req.stdout.write(`${shellQuote(launch.command)}\n`);
      req.stderr.write(
        req.outDir !== undefined
          ? `slimroot: dry run: the VM's files are in ${out.path}\n`
          : `slimroot: dry run: the VM's files are kept in ${out.path} (remove it when done)\n`,
      );
      return 0;
    }
    await launch.preflight();
    // Asked to stop while preparing: nothing has run, so nothing to stop.
    if (req.stop?.aborted || req.kill?.aborted) {
      const reason: unknown = req.stop?.reason;
      return typeof reason === "number" ? reason : STOPPED_STATUS;
    }
    notes();
    return await boot(req, launch, report);
  } finally {
    await out?.discard();
    if (!keep) await rm(scratch, { recursive: true, force: true });
    untrackTempPath(scratch);
  }
}

/** What a run reads from the host, which its files must never replace. */
function runInputs(req: RunRequest): InputPath[] {
  return [
    { path: req.image, what: req.image },
    ...(req.kernel ? [{ path: req.kernel, what: `--kernel ${req.kernel}` }] : []),
    ...(req.modules ? [{ path: req.modules, what: `--modules ${req.modules}` }] : []),
    ...(req.volumes ?? []).map((v) => ({ path: v.file, what: `--volume ${v.file}` })),
  ];
}

/** What a stop request without a status reports when the VM ends without an exit report. */
const STOPPED_STATUS = 128 + 15;

/** Seconds for messages. */
const secs = (ms: number) => `${Math.round(ms / 100) / 10} s`;

/**
 * [binary, ...arguments] that start the VMM so that it dies with us, even when we are killed
 * with SIGKILL (no exit handler runs then): util-linux's setpriv (essential in Debian) sets
 * PR_SET_PDEATHSIG, which survives its exec of the VMM. Node cannot set it itself, and QEMU
 * 7.2 has no such option (-run-with came in 8.1). Without setpriv, the VMM is still killed
 * on every other way we end.
 */
export function guardedCommand(p: Pick<Launch, "command" | "notFound">): string[] {
  if (!hostExecutable(p.command[0]!)) throw new RunFailure(p.notFound);
  const setpriv = hostExecutable("setpriv");
  return setpriv ? [setpriv, "--pdeathsig", "KILL", "--", ...p.command] : [...p.command];
}

function boot(req: RunRequest, p: Launch, report: GuestReport): Promise<number> {
  const [binary, ...args] = guardedCommand(p) as [string, ...string[]];
  // Its own process group: a Ctrl-C on the terminal reaches only us, and we stop the app
  // gracefully instead of the VMM dying on the spot.
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
  let vmmStderr = "";
  let panic: string | undefined;
  let stopStatus: number | undefined;
  let timedOut = false;
  let killed = false;
  let exited = false;
  const timers: NodeJS.Timeout[] = [];

  const kill = () => {
    if (!exited) child.kill("SIGKILL");
  };
  const killOnExit = () => kill();
  process.on("exit", killOnExit);

  const watcher = new ConsoleWatcher(report, () => {
    // The init reboots right after the report; a VM that does not end is ended.
    timers.push(setTimeout(kill, 5000));
  });
  watcher.on("data", (d: Buffer) => {
    const m = /Kernel panic - not syncing: [^\n]*/.exec(d.toString("latin1"));
    if (m) panic = m[0];
  });
  child.stdout.pipe(watcher).pipe(req.stdout as NodeJS.WritableStream, { end: false });
  child.stderr.on("data", (d: Buffer) => {
    vmmStderr = (vmmStderr + d.toString()).slice(-8192);
  });

  const stop = () => {
    if (!p.requestStop) {
      kill(); // the VMM cannot tell the guest: end it now
      return;
    }
    const deadline = Date.now() + req.stopGraceMs;
    timers.push(
      setTimeout(() => {
        killed = !exited;
        kill();
      }, req.stopGraceMs),
    );
    p.requestStop(deadline, () => exited).catch((err: Error) => {
      // No way in (the VMM is going away, or never came up): the grace timer ends it.
      if (process.env.SLIMROOT_DEBUG) req.stderr.write(`slimroot: stop: ${err.message}\n`);
    });
  };

  const onStop = () => {
    if (stopStatus !== undefined || timedOut || exited) return;
    const reason: unknown = req.stop?.reason;
    stopStatus = typeof reason === "number" ? reason : STOPPED_STATUS;
    stop();
  };
  req.stop?.addEventListener("abort", onStop);
  if (req.stop?.aborted) onStop();
  req.kill?.addEventListener("abort", kill);
  if (req.kill?.aborted) kill();
  if (req.timeoutMs !== undefined) {
    timers.push(
      setTimeout(() => {
        if (stopStatus !== undefined || exited) return;
        timedOut = true;
        stop();
      }, req.timeoutMs),
    );
  }

  return new Promise<number>((resolve, reject) => {
    let spawnError: NodeJS.ErrnoException | undefined;
    child.on("error", (err: NodeJS.ErrnoException) => {
      spawnError = err;
    });
    child.on("close", (code, signal) => {
      exited = true;
      for (const t of timers) clearTimeout(t);
      process.off("exit", killOnExit);
      req.stop?.removeEventListener("abort", onStop);
      req.kill?.removeEventListener("abort", kill);
      if (spawnError) {
        return reject(
          new RunFailure(
            spawnError.code === "ENOENT" ? p.notFound : `cannot start ${binary}: ${spawnError.message}`,
          ),
        );
      }
      const timeout = timedOut ? `timed out after ${secs(req.timeoutMs!)}; ` : "";
      // Killed, after --timeout too: 137, as timeout(1) --kill-after reports its KILL.
      if (killed && watcher.exitCode === undefined) {
        req.stderr.write(
          `slimroot: ${timeout}the app did not stop within ${secs(req.stopGraceMs)}; VM killed\n`,
        );
        return resolve(EXIT_KILLED);
      }
      if (timedOut) {
        req.stderr.write(`slimroot: ${timeout}VM stopped\n`);
        return resolve(EXIT_TIMEOUT);
      }
      if (watcher.exitCode !== undefined) return resolve(watcher.exitCode);
      if (stopStatus !== undefined) return resolve(stopStatus);
      const why =
        panic ??
        lastLine(vmmStderr) ??
        lastLine(p.log ? readTail(p.log) : "") ??
        (signal ? `${p.vmmName} killed by ${signal}` : `${p.vmmName} exit status ${code}`);
      reject(new RunFailure(`the VM ended without an exit report from the init: ${why}`));
    });
  });
}

/** The end of a log file, or "" when there is none. */
function readTail(path: string): string {
  try {
    return readFileSync(path, "utf8").slice(-8192);
  } catch {
    return "";
  }
}

function lastLine(text: string): string | undefined {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !/^qemu-system-\w+: terminating on signal/.test(l));
  return lines.pop();
}
