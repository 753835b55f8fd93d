import { open, readFile, stat, unlink } from "node:fs/promises";

/** Whether a process with this pid exists (EPERM: it does, as another user's). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Cross-process mutex: an O_EXCL file holding the owner's pid; a dead owner's lock is taken
 * over. `onWait` is told once when another live process holds it.
 */
export async function withLock<T>(
  lockPath: string,
  fn: () => Promise<T>,
  onWait?: (owner: number) => void,
): Promise<T> {
  let announced = false;
  for (;;) {
    try {
      const fh = await open(lockPath, "wx");
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const owner = Number.parseInt(await readFile(lockPath, "utf8").catch(() => ""), 10);
    // An empty file is a lock being created right now; an old one is from a crash.
    const age = await stat(lockPath).then(
      (s) => Date.now() - s.mtimeMs,
      () => 0,
    );
    const stale = Number.isNaN(owner) ? age > 10_000 : !pidAlive(owner);
    if (stale) {
      await unlink(lockPath).catch(() => {});
      continue;
    }
    if (!announced) {
      onWait?.(owner);
      announced = true;
    }
    await sleep(500);
  }
  try {
    return await fn();
  } finally {
    await unlink(lockPath).catch(() => {});
  }
}
