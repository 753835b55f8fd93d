/**
 * `slimroot run`: boots an image under QEMU with its app's console on our stdout and exits
 * with the app's status. See docs/run.md for the exit codes and the stop sequence.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Arch } from "../arch/arch.js";
import { embeddedAppKernel, resolveKernel } from "../kernel/resolve.js";
import { GUEST_MODULES_DIR } from "../kmod/modules-cpio.js";
import { ConsoleWatcher } from "./console.js";
import { imageInfo } from "./image-info.js";
import { joinInitrd } from "./initrd.js";
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
  memMiB: number;
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
  /** Aborting it stops the app as SIGTERM to us would (Ctrl-Alt-Del, then the grace period). */
  stop?: AbortSignal;
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
  const embedded = await embeddedAppKernel(req.image);
  if (embedded) return prepareEmbedded(req, embedded.arch, scratch);
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
  await joinInitrd([req.image, ...(bk.modulesCpio ? [bk.modulesCpio] : []), await runConfCpio(conf)], initrd);
  const qmpSocket = join(scratch, "qmp.sock");
  const command = qemuCommand({
    arch,
    machine,
    accel,
    kernel: bk.kernel,
    initrd,
    acpi: !bk.cmdlineDevices,
    memMiB: req.memMiB,
    cpus: req.cpus,
    forwards: req.forwards,
    qmpSocket,
    ...(tscKhz ? { tscKhz } : {}),
  });
  return { command, machine, arch, qmpSocket };
}

/**
 * The longest slimroot.conf= value we put on the kernel command line: the kernel keeps 2048
 * bytes of it on x86 and arm64, and QEMU and our own arguments take the rest.
 */
const MAX_CMDLINE_CONF = 1536;

/**
 * A kernel with the app built in (kernel build --embed): no initrd, so the run settings go
 * on the kernel command line as slimroot.conf=BASE64 (docs/run.md), and QEMU microvm runs
 * without ACPI (slimroot's kernel takes its devices from the command line).
 */
async function prepareEmbedded(req: RunRequest, arch: Arch, scratch: string): Promise<Prepared> {
  if (req.kernel !== undefined || req.modules !== undefined)
    throw new RunFailure(
      `${req.image} is a kernel with its app built in: --kernel and --modules do not apply`,
    );
  const accel = chooseAccel(arch);
  const tscKhz = arch === "amd64" && accel === "tcg" ? hostTscKhz() : undefined;
  const machine = chooseMachine(arch, accel, tscKhz);
  const conf = runConfText({
    network: true,
    env: req.env,
    ...(req.args ? { args: req.args } : {}),
    ...(req.trace ? { trace: true } : {}),
  });
  const encoded = Buffer.from(conf.replace(/^#.*\n/gm, ""))
    .toString("base64")
    .replace(/=+$/, "");
  if (encoded.length > MAX_CMDLINE_CONF)
    throw new RunFailure(
      `run settings too long for the kernel command line (${encoded.length} bytes of base64, at most ${MAX_CMDLINE_CONF}): use fewer -e/arguments or the initramfs form`,
    );
  const qmpSocket = join(scratch, "qmp.sock");
  const command = qemuCommand({
    arch,
    machine,
    accel,
    kernel: req.image,
    acpi: false,
    extraCmdline: `slimroot.conf=${encoded}`,
    memMiB: req.memMiB,
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
    return await boot(req, p);
  } finally {
    if (!keep) await rm(scratch, { recursive: true, force: true });
  }
}

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
const SIGNAL_NUMBERS: Record<(typeof SIGNALS)[number], number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

/** Seconds for messages. */
const secs = (ms: number) => `${Math.round(ms / 100) / 10} s`;

function boot(req: RunRequest, p: Prepared): Promise<number> {
  const [binary, ...args] = p.command as [string, ...string[]];
  // Its own process group: a Ctrl-C on the terminal reaches only us, and we stop the app
  // gracefully instead of QEMU dying on the spot.
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
  let qemuStderr = "";
  let panic: string | undefined;
  let stopSignal: (typeof SIGNALS)[number] | undefined;
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

  const onSignal = (sig: (typeof SIGNALS)[number]) => {
    if (stopSignal || timedOut) {
      kill(); // a second request: no more waiting
      return;
    }
    stopSignal = sig;
    stop();
  };
  const saved = new Map(SIGNALS.map((s) => [s, process.listeners(s)] as const));
  const handlers = new Map(SIGNALS.map((s) => [s, () => onSignal(s)] as const));
  for (const s of SIGNALS) {
    process.removeAllListeners(s);
    process.on(s, handlers.get(s)!);
  }
  const onAbort = () => {
    if (stopSignal || timedOut || exited) return;
    stopSignal = "SIGTERM";
    stop();
  };
  req.stop?.addEventListener("abort", onAbort);
  if (req.stop?.aborted) onAbort();
  if (req.timeoutMs !== undefined) {
    timers.push(
      setTimeout(() => {
        if (stopSignal || exited) return;
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
      req.stop?.removeEventListener("abort", onAbort);
      for (const s of SIGNALS) {
        process.off(s, handlers.get(s)!);
        for (const l of saved.get(s)!) process.on(s, l as () => void);
      }
      if (spawnError) {
        return reject(
          new RunFailure(
            spawnError.code === "ENOENT"
              ? `${binary} not found: install QEMU (apt-get install ${qemuPackage(p.arch)})`
              : `cannot start ${binary}: ${spawnError.message}`,
          ),
        );
      }
      if (timedOut) {
        req.stderr.write(`slimroot: timed out after ${secs(req.timeoutMs!)}; VM stopped\n`);
        return resolve(EXIT_TIMEOUT);
      }
      if (killed && watcher.exitCode === undefined) {
        req.stderr.write(`slimroot: the app did not stop within ${secs(req.stopGraceMs)}; VM killed\n`);
        return resolve(EXIT_KILLED);
      }
      if (watcher.exitCode !== undefined) return resolve(watcher.exitCode);
      if (stopSignal) return resolve(128 + SIGNAL_NUMBERS[stopSignal]);
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
