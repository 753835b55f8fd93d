import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { withLock } from "./lock.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("a lock left by a dead owner is taken by exactly one of many waiters at a time", async () => {
  const dir = await mkdtemp(join(tmpdir(), "lock-test-"));
  try {
    const lock = join(dir, "x.lock");
    // What a crashed holder leaves: its pid, now dead (the pid-file lock let two waiters
    // both judge it stale and both hold it).
    const dead = spawn("true");
    await new Promise((r) => dead.once("exit", r));
    let inside = 0;
    let most = 0;
    for (let trial = 0; trial < 10; trial++) {
      await writeFile(lock, String(dead.pid));
      await Promise.all(
        Array.from({ length: 8 }, async (_, i) => {
          await sleep((i * 7 + trial) % 5);
          await withLock(lock, async () => {
            inside++;
            most = Math.max(most, inside);
            await sleep(20);
            inside--;
          });
        }),
      );
    }
    assert.equal(most, 1);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a holder that dies releases the lock at once; a waiter is told who holds it", async () => {
  const dir = await mkdtemp(join(tmpdir(), "lock-test-"));
  try {
    const lock = join(dir, "x.lock");
    let owner = -1;
    let order = "";
    const first = withLock(lock, async () => {
      order += "a";
      await sleep(800);
      order += "b";
    });
    await sleep(100);
    await withLock(
      lock,
      async () => {
        order += "c";
      },
      (pid) => {
        owner = pid;
      },
    );
    await first;
    assert.equal(order, "abc");
    assert.equal(owner, process.pid);
    // A process killed while holding it (SIGKILL: no cleanup runs) does not leave it held.
    const script = join(dir, "hold.mts");
    await writeFile(
      script,
      `import { withLock } from ${JSON.stringify(join(import.meta.dirname, "lock.ts"))};
await withLock(${JSON.stringify(lock)}, async () => { console.log("held"); await new Promise((r) => setTimeout(r, 60000)); });`,
    );
    const holder = spawn(process.execPath, ["--import", "tsx", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    await new Promise((r) => holder.stdout.once("data", r));
    holder.kill("SIGKILL");
    const t = Date.now();
    await withLock(lock, async () => {});
    assert.ok(Date.now() - t < 5000, `${Date.now() - t} ms`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
