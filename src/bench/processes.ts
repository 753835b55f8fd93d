/**
 * Every process bench starts goes through here, so that when bench ends (normally, on an
 * error, or on Ctrl-C) no VM is left: `slimroot run` children are asked to stop (they stop
 * their QEMU), QEMU children of the hand-made routes are killed with their process group.
 */
import { type ChildProcess, spawn } from "node:child_process";

export interface Started {
  child: ChildProcess;
  /** Console and messages so far (stdout and stderr together), the last 64 KiB. */
  readonly output: string;
  /** Exit code, or 128+signal. */
  exited: Promise<number>;
  readonly done: boolean;
}

const live = new Set<Started>();

/** How long a child gets to end after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 15_000;

/**
 * Starts `argv` in its own process group (so a Ctrl-C on the terminal reaches bench only, and
 * bench decides how each child stops), with `env` added to ours.
 */
export function start(argv: readonly string[], env: NodeJS.ProcessEnv = {}): Started {
  const [bin, ...args] = argv as [string, ...string[]];
  const child = spawn(bin, args, {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
    env: { ...process.env, ...env },
  });
  let out = "";
  let done = false;
  const onData = (d: Buffer) => {
    out = (out + d.toString("latin1")).slice(-65536);
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const s: Started = {
    child,
    get output() {
      return out;
    },
    get done() {
      return done;
    },
    exited: new Promise<number>((resolve) => {
      child.on("error", (err) => {
        out += `\n${err.message}`;
        done = true;
        live.delete(s);
        resolve(127);
      });
      child.on("close", (code, signal) => {
        done = true;
        live.delete(s);
        resolve(code ?? 128 + (signal ? signalNumber(signal) : 0));
      });
    }),
  };
  live.add(s);
  return s;
}

function signalNumber(signal: NodeJS.Signals): number {
  return { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 }[signal as string] ?? 0;
}

function killGroup(s: Started, signal: NodeJS.Signals): void {
  if (s.done || s.child.pid === undefined) return;
  try {
    process.kill(-s.child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** SIGTERM to the process group, then SIGKILL after the grace period; resolves when it ended. */
export async function stop(s: Started, graceMs = STOP_GRACE_MS): Promise<number> {
  killGroup(s, "SIGTERM");
  const timer = setTimeout(() => killGroup(s, "SIGKILL"), graceMs);
  try {
    return await s.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Stops everything still running (bench is ending). */
export async function stopAll(graceMs = STOP_GRACE_MS): Promise<void> {
  await Promise.all([...live].map((s) => stop(s, graceMs)));
}

/** Last resort when the process is exiting now: no waiting possible. */
export function killAllSync(): void {
  for (const s of live) killGroup(s, "SIGKILL");
}
