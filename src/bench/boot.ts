/**
 * One measured boot: start the VMM (through `slimroot run`, or QEMU itself for the hand-made
 * routes), and time until every probe has passed, or until the init's exit report for the
 * floor. Then the VM is stopped and waited for.
 */
import { KERNEL_LINE } from "../trace/console-trace.js";
import { type Probe, probePorts, TIMED_PROBE, waitForProbes } from "../trace/probe.js";
import { freePort } from "../util/net.js";
import { GuestReport, newReportKey, REPORT_KEY_ENV, REPORT_LINE } from "../vm/report.js";
import { STANDBY_LINE, STANDBY_SIGNAL } from "../vm/standby.js";
import { type Started, start, stop } from "./processes.js";

/** Guest port -> a free host port for each port the probes use. */
export async function portsFor(probes: readonly Probe[]): Promise<Map<number, number>> {
  const ports = new Map<number, number>();
  for (const p of probes) for (const g of probePorts(p)) if (!ports.has(g)) ports.set(g, await freePort());
  return ports;
}

export type Ready = { seconds: number } | { error: string };

/**
 * Starts `argv` and resolves with the seconds from start until all `probes` pass (in order),
 * or, without probes, until the console shows the init's exit report. `slimroot run` gets
 * the report key from us, so that an app's look-alike of the report does not count. The VM is
 * stopped before this resolves. `standby`: argv is a `run APP.snap --standby`; the time counts
 * from the signal that resumes it, sent once it stands by.
 */
export async function timeReady(
  argv: readonly string[],
  probes: readonly Probe[],
  ports: ReadonlyMap<number, number>,
  timeoutMs: number,
  env: Readonly<Record<string, string>> = {},
  standby = false,
): Promise<Ready> {
  let t0 = process.hrtime.bigint();
  const key = newReportKey();
  const s = start(argv, { ...env, [REPORT_KEY_ENV]: key });
  const elapsed = () => Number(process.hrtime.bigint() - t0) / 1e9;
  const deadline = Date.now() + timeoutMs;
  try {
    if (standby) {
      await waitForLine(s, STANDBY_LINE, deadline);
      t0 = process.hrtime.bigint();
      s.child.kill(STANDBY_SIGNAL);
    }
    if (probes.length === 0) return await waitForExitReport(s, key, elapsed, deadline);
    const gone = () => (s.done ? `the VM ended (${lastLine(s.output, key)})` : undefined);
    await waitForProbes(probes, ports, deadline, gone, TIMED_PROBE);
    return { seconds: elapsed() };
  } catch (err) {
    return { error: (err as Error).message };
  } finally {
    await stop(s);
  }
}

/** Until `line` is a whole line of the output; throws if the process ends or the deadline passes first. */
async function waitForLine(s: Started, line: string, deadline: number): Promise<void> {
  for (;;) {
    if (`\n${s.output}`.includes(`\n${line}\n`)) return;
    if (s.done) throw new Error(`it ended before standing by (${lastLine(s.output)})`);
    if (Date.now() > deadline) throw new Error("it did not stand by before the timeout");
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function waitForExitReport(
  s: Started,
  key: string,
  elapsed: () => number,
  deadline: number,
): Promise<Ready> {
  for (;;) {
    if (new GuestReport(key).scan(s.output).exitCode !== undefined) return { seconds: elapsed() };
    if (s.done) return { error: `the VM ended without an exit report (${lastLine(s.output, key)})` };
    if (Date.now() > deadline) return { error: "no exit report before the timeout" };
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The console's last line from the init or the app (not the kernel), with the init's exit report. */
export function lastLine(text: string, key?: string): string {
  const lines = text
    .trim()
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l);
  const said = lines.filter((l) => !KERNEL_LINE.test(l) && !REPORT_LINE.test(l)).pop();
  const exit = key ? new GuestReport(key).scan(text).exitCode : undefined;
  const line = said ?? lines.pop() ?? "no output";
  return `${line.slice(0, 200)}${exit !== undefined ? `; SLIMROOT_EXIT=${exit}` : ""}`;
}

/**
 * The least guest memory (MiB) with which `boot(mib)` still passes, by bisection between
 * `floorMiB` (assumed to fail) and `startMiB` (doubled until it passes, up to `maxMiB`).
 * Every step is a real boot proven by the probes.
 */
export async function leastMemory(
  boot: (mib: number) => Promise<boolean>,
  o: { floorMiB: number; startMiB: number; maxMiB: number; onStep?: (mib: number, ok: boolean) => void },
): Promise<number | undefined> {
  let hi = o.startMiB;
  for (;;) {
    const ok = await boot(hi);
    o.onStep?.(hi, ok);
    if (ok) break;
    if (hi >= o.maxMiB) return undefined;
    hi = Math.min(hi * 2, o.maxMiB);
  }
  let lo = o.floorMiB;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    const ok = await boot(mid);
    o.onStep?.(mid, ok);
    if (ok) hi = mid;
    else lo = mid;
  }
  return hi;
}

export interface Stats {
  min: number;
  median: number;
  max: number;
  runs: number[];
}

export function stats(xs: readonly number[]): Stats | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { min: s[0]!, median, max: s[s.length - 1]!, runs: [...xs] };
}
