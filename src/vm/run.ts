/**
 * `slimroot run`: boots an image under QEMU with its app's console on our stdout and exits
 * with the app's status. See docs/run.md for the exit codes and the stop sequence.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Arch } from "../arch/arch.js";
import { resolveKernel } from "../kernel/resolve.js";
import { GUEST_MODULES_DIR } from "../kmod/modules-cpio.js";
import { hostExecutable } from "../util/host-path.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";
import { ConsoleWatcher } from "./console.js";
import { imageInfo } from "./image-info.js";
import { joinInitrd } from "./initrd.js";
import { chooseMemoryMiB, initrdFootprint } from "./memory.js";
import { checkPortsFree, type PortForward } from "./ports.js";
import {
  chooseAccel,
  chooseMachine,
  hostTscKhz,
  type Machine,
  qemuCommand,
  qemuPackage,
  shellQuote,
} from "./qemu.js";
import { runConfCpio, runConfText } from "./runconf.js";
import { pressCtrlAltDel } from "./stop.js";

/** Exit statuses of `slimroot run` besides the app's own. */
export const EXIT_FAILED = 125;
export const EXIT_TIMEOUT = 124;
export const EXIT_KILLED = 137;

/** Anything that kept the VM from running the app: reported in one line, exit 125. */
export class RunFailure extends Error {}

export interface RunRequest {
  image: string;
  kernel?: string;
  modules?: string;
  forwards: readonly PortForward[];
  /** Guest memory; default: sized from the image (memory.ts). Too little for the image is an error. */
  memMiB?: number;
  cpus: number;
  /** NAME=VALUE for run.conf. */
  env: readonly string[];
  /** Replaces the image's whole argv (run.conf `arg` lines replace app.conf's). */
  args?: readonly string[];
  timeoutMs?: number;
  /** How long the app gets to stop after SIGTERM/SIGINT or the timeout, before QEMU is killed. */
  stopGraceMs: number;
  dryRun: boolean;
  /** Record mode (slimroot trace): the init prints SLIMROOT_TRACE lines before its exit report. */
  trace?: boolean;
  /**
   * Aborting it stops the app gracefully: Ctrl-Alt-Del, which the init turns into SIGTERM for
   * the app, then QEMU is killed after the grace period. A number as the abort reason is the
   * status to report if the VM ends without an exit report (default 143, as for SIGTERM).
   */
  stop?: AbortSignal;
  /** Aborting it kills QEMU at once. */
  kill?: AbortSignal;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

interface Prepared {
  command: string[];
  machine: Machine;
  arch: Arch;
  qmpSocket: string;
}

/** Builds the initrd and the QEMU command in `scratch`. */
async function prepare(req: RunRequest, scratch: string): Promise<Prepared> {
  const { arch } = await imageInfo(req.image);
  const accel = chooseAccel(arch);
  const tscKhz = arch === "amd64" && accel === "tcg" ? hostTscKhz() : undefined;
  const machine = chooseMachine(arch, accel, tscKhz);
  const transport = machine === "pc" ? "pci" : "mmio";
  const bk = await resolveKernel({ kernel: req.kernel, modules: req.modules, arch, transport, scratch });
  if (bk.kind.arch !== arch) {
    throw new RunFailure(`kernel ${bk.label} is ${bk.kind.arch}, but the image ${req.image} is ${arch}`);
  }
  const conf = runConfText({
    network: true,
    env: req.env,
    ...(req.args ? { args: req.args } : {}),
    ...(req.trace ? { trace: true } : {}),
    ...(bk.modulesCpio ? { modulesDir: `/${GUEST_MODULES_DIR}` } : {}),
  });
  const initrd = join(scratch, "initrd");
  const archives = [req.image, ...(bk.modulesCpio ? [bk.modulesCpio] : [])];
  await joinInitrd([...archives, await runConfCpio(conf)], initrd);
  const memMiB = chooseMemoryMiB(await initrdFootprint(archives, initrd), arch, req.memMiB, req.image);
  const qmpSocket = join(scratch, "qmp.sock");
  const command = qemuCommand({
    arch,
    machine,
    accel,
    kernel: bk.kernel,
    initrd,
    memMiB,
    cpus: req.cpus,
    forwards: req.forwards,
    qmpSocket,
    ...(tscKhz ? { tscKhz } : {}),
  });
  return { command, machine, arch, qmpSocket };
}

/** Runs the image; resolves with the exit status for `slimroot run`. */
export async function runImage(req: RunRequest): Promise<number> {
  const scratch = await mkdtemp(join(tmpdir(), "slimroot-run-"));
  trackTempPath(scratch); // a signal that ends the process removes it too
  let keep = false;
  try {
    const p = await prepare(req, scratch);
    if (req.dryRun) {
      keep = true;
      req.stdout.write(`${shellQuote(p.command)}\n`);
      req.stderr.write(`slimroot: dry run: the initrd is kept in ${scratch} (remove it when done)\n`);
      return 0;
    }
    await checkPortsFree(req.forwards).catch((err: Error) => {
      throw new RunFailure(err.message);
    });
    // Asked to stop while preparing: nothing has run, so nothing to stop.
    if (req.stop?.aborted || req.kill?.aborted) {
      const reason: unknown = req.stop?.reason;
      return typeof reason === "number" ? reason : STOPPED_STATUS;
    }
    return await boot(req, p);
  } finally {
    untrackTempPath(scratch);
    if (!keep) await rm(scratch, { recursive: true, force: true });
  }
}

/** What a stop request without a status reports when the VM ends without an exit report. */
const STOPPED_STATUS = 128 + 15;

/** Seconds for messages. */
const secs = (ms: number) => `${Math.round(ms / 100) / 10} s`;

/**
 * [binary, ...arguments] that start QEMU so that it dies with us, even when we are killed
 * with SIGKILL (no exit handler runs then): util-linux's setpriv (essential in Debian) sets
 * PR_SET_PDEATHSIG, which survives its exec of QEMU. Node cannot set it itself, and QEMU 7.2
 * has no such option (-run-with came in 8.1). Without setpriv, QEMU is still killed on
 * every other way we end.
 */
export function guardedCommand(command: readonly string[], arch: Arch): string[] {
  const [binary] = command as [string];
  if (!hostExecutable(binary))
    throw new RunFailure(`${binary} not found: install QEMU (apt-get install ${qemuPackage(arch)})`);
  const setpriv = hostExecutable("setpriv");
  return setpriv ? [setpriv, "--pdeathsig", "KILL", "--", ...command] : [...command];
}

function boot(req: RunRequest, p: Prepared): Promise<number> {
  const [binary, ...args] = guardedCommand(p.command, p.arch) as [string, ...string[]];
  // Its own process group: a Ctrl-C on the terminal reaches only us, and we stop the app
  // gracefully instead of QEMU dying on the spot.
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
  let qemuStderr = "";
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

  const watcher = new ConsoleWatcher(() => {
    // The init reboots right after the report; a VM that does not end is ended.
    timers.push(setTimeout(kill, 5000));
  });
  watcher.on("data", (d: Buffer) => {
    const m = /Kernel panic - not syncing: [^\n]*/.exec(d.toString("latin1"));
    if (m) panic = m[0];
  });
  child.stdout.pipe(watcher).pipe(req.stdout as NodeJS.WritableStream, { end: false });
  child.stderr.on("data", (d: Buffer) => {
    qemuStderr = (qemuStderr + d.toString()).slice(-8192);
  });

  const stop = () => {
    const deadline = Date.now() + req.stopGraceMs;
    timers.push(
      setTimeout(() => {
        killed = !exited;
        kill();
      }, req.stopGraceMs),
    );
    pressCtrlAltDel(p.qmpSocket, p.machine, deadline, () => exited).catch((err: Error) => {
      // No QMP (QEMU is going away, or never came up): the grace timer ends it.
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
        return reject(new RunFailure(`cannot start ${binary}: ${spawnError.message}`));
      }
      if (timedOut) req.stderr.write(`slimroot: timed out after ${secs(req.timeoutMs!)}\n`);
      // Killed, after --timeout too: 137, as timeout(1) --kill-after reports its KILL.
      if (killed && watcher.exitCode === undefined) {
        req.stderr.write(`slimroot: the app did not stop within ${secs(req.stopGraceMs)}; VM killed\n`);
        return resolve(EXIT_KILLED);
      }
      if (timedOut) return resolve(EXIT_TIMEOUT);
      if (watcher.exitCode !== undefined) return resolve(watcher.exitCode);
      if (stopStatus !== undefined) return resolve(stopStatus);
      const why =
        panic ?? lastLine(qemuStderr) ?? (signal ? `QEMU killed by ${signal}` : `QEMU exit status ${code}`);
      reject(new RunFailure(`the VM ended without an exit report from the init: ${why}`));
    });
  });
}

function lastLine(text: string): string | undefined {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !/^qemu-system-\w+: terminating on signal/.test(l));
  return lines.pop();
}
