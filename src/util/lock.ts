import { type ChildProcess, spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { EnvironmentError } from "./errors.js";
import { toolNotFound } from "./tools.js";

/** Whether a process with this pid exists (EPERM: it does, as another user's). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** How long a lock may take before `onWait` is told someone else holds it. */
const ANNOUNCE_AFTER_MS = 300;

/**
 * Takes an exclusive flock(2) on `lockPath` through util-linux's flock(1), whose child holds
 * it until its stdin closes: when we release it, or when this process dies in any way (the
 * kernel closes the pipe), so a crash never leaves a stale lock and no two holders can
 * ever coexist (the pid-file scheme this replaces could be taken twice when two waiters
 * both judged it stale). The file itself stays: removing a flock'd file lets a late waiter
 * lock a name that is no longer the lock.
 */
async function acquire(lockPath: string, onWait?: (owner: number) => void): Promise<ChildProcess> {
  const child = spawn("flock", ["-x", lockPath, "sh", "-c", "echo locked && exec cat"], {
    stdio: ["pipe", "pipe", "pipe"],
    // Its own process group: Ctrl-C on the terminal must not release the lock before we
    // have cleaned up.
    detached: true,
  });
  let err = "";
  child.stderr!.on("data", (d: Buffer) => {
    err += d;
  });
  const timer = setTimeout(async () => {
    const owner = Number.parseInt(await readFile(lockPath, "utf8").catch(() => ""), 10);
    onWait?.(Number.isNaN(owner) ? 0 : owner);
  }, ANNOUNCE_AFTER_MS);
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once("data", () => resolve());
      child.once("error", (e: NodeJS.ErrnoException) =>
        reject(new EnvironmentError(e.code === "ENOENT" ? toolNotFound("flock") : `flock: ${e.message}`)),
      );
      child.once("exit", (code) =>
        reject(new EnvironmentError(`flock ${lockPath}: ${err.trim() || `exit ${code}`}`)),
      );
    });
  } finally {
    clearTimeout(timer);
  }
  child.removeAllListeners("exit");
  // For the messages of those who wait: who holds it.
  await writeFile(lockPath, String(process.pid)).catch(() => {});
  return child;
}

function release(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.stdin!.end();
  });
}

/**
 * Cross-process mutex on `lockPath` (created if missing, never removed). `onWait` is told
 * once, with the holder's pid (0 when unknown), when another process holds it.
 */
export async function withLock<T>(
  lockPath: string,
  fn: () => Promise<T>,
  onWait?: (owner: number) => void,
): Promise<T> {
  const held = await acquire(lockPath, onWait);
  try {
    return await fn();
  } finally {
    await release(held);
  }
}
