/**
 * Ready after a resume against a cold boot of the same image, in one run (issue 18 item 3):
 * `node --import tsx scripts/snapshot-measure.ts IMAGE.cpio.gz APP.snap GUESTPORT [ROUNDS [RUN-OPTIONS...]]`
 * (RUN-OPTIONS: what the snapshot was made with, e.g. `--kernel DIR`, for the cold boots).
 * Each round boots IMAGE with `slimroot run -p` and resumes APP.snap the same way, one after
 * the other, and times from spawning the CLI to the first answer on the forwarded port
 * (a connection that brings data within 200 ms after sending an HTTP request line; attempts
 * every 20 ms). At that moment it also reads the CPU time (user + sys) of slimroot and every
 * process below it, live or reaped (QEMU, and the zstd QEMU ran for a resume), from /proc.
 * Medians on stdout, as JSON. With BEFORE_CLI=OTHER/dist/cli/main.js and BEFORE_SNAP=OTHER.snap
 * (that CLI's snapshot of the same image), each round also resumes that one with that CLI,
 * interleaved with the others: an A/B of two builds in one run.
 */
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { freePort } from "../src/util/net.js";

const [image, snap, guest, rounds = "3", ...coldArgs] = process.argv.slice(2);
if (!image || !snap || !guest)
  throw new Error("usage: snapshot-measure.ts IMAGE APP.snap GUESTPORT [ROUNDS]");
const MAIN = join(import.meta.dirname, "..", "dist", "cli", "main.js");

const answers = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, "127.0.0.1");
    // Short attempts: a connection QEMU's user network accepted while the guest was not yet
    // running waits for slirp's retransmission (seconds); a fresh one is what a client sees.
    s.setTimeout(200, () => s.destroy());
    s.once("connect", () => s.write("GET / HTTP/1.0\r\n\r\n"));
    s.once("data", () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
    s.on("close", () => resolve(false));
  });

/** /proc/PID/stat's fields after the command name: [state, ppid, ...]. */
function statOf(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ").pop()!.split(" ");
  } catch {
    return undefined;
  }
}

/** CPU seconds of `root` and its descendants: utime + stime + the same of their reaped children. */
function treeCpuSeconds(root: number): number {
  const children = new Map<number, number[]>();
  for (const d of readdirSync("/proc")) {
    const pid = Number(d);
    const ppid = Number.isInteger(pid) ? Number(statOf(pid)?.[1]) : Number.NaN;
    if (Number.isInteger(ppid)) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  }
  let ticks = 0;
  for (const todo = [root]; todo.length; ) {
    const pid = todo.pop()!;
    const f = statOf(pid);
    // utime, stime, cutime, cstime: fields 14-17 of stat, 11-14 after the name.
    if (f) ticks += [11, 12, 13, 14].reduce((n, i) => n + Number(f[i]), 0);
    todo.push(...(children.get(pid) ?? []));
  }
  return ticks / 100; // USER_HZ
}

async function readySeconds(
  file: string,
  extra: string[] = [],
  cli = MAIN,
): Promise<{ wall: number; cpu: number }> {
  const port = await freePort();
  const t0 = performance.now();
  const child = spawn(process.execPath, [cli, "run", file, ...extra, "-p", `127.0.0.1:${port}:${guest}`], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000);
  });
  const closed = new Promise((r) => child.once("close", r));
  let exited = false;
  void closed.then(() => {
    exited = true;
  });
  try {
    for (;;) {
      if (exited) throw new Error(`${file}: slimroot run ended before an answer: ${stderr.trim()}`);
      if (await answers(port))
        return { wall: (performance.now() - t0) / 1000, cpu: treeCpuSeconds(child.pid!) };
      if (performance.now() - t0 > 120_000) throw new Error(`${file}: no answer in 120 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    child.kill("SIGTERM");
    await closed;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const cold: { wall: number; cpu: number }[] = [];
const resumed: { wall: number; cpu: number }[] = [];
const before: { wall: number; cpu: number }[] = [];
const { BEFORE_CLI, BEFORE_SNAP } = process.env;
for (let i = 0; i < Number(rounds); i++) {
  cold.push(await readySeconds(image, coldArgs));
  if (BEFORE_CLI && BEFORE_SNAP) before.push(await readySeconds(BEFORE_SNAP, [], BEFORE_CLI));
  resumed.push(await readySeconds(snap));
}
const m = (xs: { wall: number; cpu: number }[], k: "wall" | "cpu") => median(xs.map((x) => x[k]));
const ratio = (k: "wall" | "cpu") => Math.round((m(resumed, k) / m(cold, k)) * 100) / 100;
console.log(
  JSON.stringify({
    cold,
    resumed,
    coldMedian: { wall: m(cold, "wall"), cpu: m(cold, "cpu") },
    resumedMedian: { wall: m(resumed, "wall"), cpu: m(resumed, "cpu") },
    ...(before.length ? { before, beforeMedian: { wall: m(before, "wall"), cpu: m(before, "cpu") } } : {}),
    ratio: { wall: ratio("wall"), cpu: ratio("cpu") },
  }),
);
