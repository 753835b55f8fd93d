/**
 * One boot of an image with probes: the VM starts, the probes run from the host until each
 * passes, a settle time passes, and the app is stopped gracefully (Ctrl-Alt-Del, which the
 * init turns into SIGINT). `slimroot trace` does this with the init in record mode; `build`
 * does it to verify a minimized image.
 */
import { Writable } from "node:stream";
import { EnvironmentError, UserError } from "../util/errors.js";
import { freePort } from "../util/net.js";
import type { PortForward } from "../vm/ports.js";
import { GuestReport } from "../vm/report.js";
import { EXIT_KILLED, RunFailure, runImage } from "../vm/run.js";
import { TraceCollector } from "./console-trace.js";
import { type PortMap, type Probe, probePorts, waitForProbes } from "./probe.js";

export interface SessionOptions {
  image: string;
  kernel?: string;
  probes: readonly Probe[];
  /** `-p` forwards; probed guest ports without one get a free host port. */
  publish?: readonly PortForward[];
  /** Default: sized from the image, as `run` does (src/vm/memory.ts). */
  memMiB?: number;
  cpus?: number;
  trace: boolean;
  /** For all probes to pass, from the start of the boot. */
  readyTimeoutMs: number;
  /** After the probes: time for work the app defers (lazy loads, logs). */
  settleMs: number;
  stopGraceMs: number;
  /** Without probes: how long the app may run before it is stopped (default: no limit). */
  runTimeoutMs?: number;
  /** Gets a copy of the guest console (--verbose). */
  echo?: NodeJS.WritableStream;
  /** Never write the image (a disk image being verified). */
  readOnly?: boolean;
}

export interface SessionResult {
  /** The app's exit status as the init reported it. */
  status: number;
  /** Guest paths the init recorded (trace only), in the order first opened. */
  traced: string[];
  /** Events the init could not record. */
  lost: number;
  /** How the syscall recorder ran (seccomp, ptrace), when it did. */
  recorder?: string;
  ports: PortMap;
}

/** Every `-p` forward, plus a free host port for each probed guest port they do not cover. */
export async function forwardsFor(
  probes: readonly Probe[],
  publish: readonly PortForward[] = [],
): Promise<PortForward[]> {
  const out = [...publish];
  const covered = new Set(publish.filter((f) => f.proto === "tcp").map((f) => f.guestPort));
  for (const guestPort of probes.flatMap(probePorts)) {
    if (covered.has(guestPort)) continue;
    covered.add(guestPort);
    out.push({ proto: "tcp", hostAddr: "127.0.0.1", hostPort: await freePort(), guestPort });
  }
  return out;
}

export async function probeSession(o: SessionOptions): Promise<SessionResult> {
  const forwards = await forwardsFor(o.probes, o.publish);
  const ports: PortMap = new Map(
    forwards.filter((f) => f.proto === "tcp").map((f) => [f.guestPort, f.hostPort] as const),
  );
  const consoleOut = new TraceCollector(o.echo);
  const report = new GuestReport();
  let runMessages = "";
  const runErr = new Writable({
    write(chunk: Buffer, _enc, cb) {
      runMessages += chunk.toString();
      cb();
    },
  });
  const stop = new AbortController();
  let ended: string | undefined;
  let status: number | undefined;
  let failure: unknown;
  const run = runImage({
    image: o.image,
    ...(o.kernel ? { kernel: o.kernel } : {}),
    forwards,
    ...(o.memMiB !== undefined ? { memMiB: o.memMiB } : {}),
    cpus: o.cpus ?? 1,
    env: [],
    ...(o.runTimeoutMs !== undefined && o.probes.length === 0 ? { timeoutMs: o.runTimeoutMs } : {}),
    stopGraceMs: o.stopGraceMs,
    dryRun: false,
    trace: o.trace,
    ...(o.readOnly ? { readOnly: true } : {}),
    stop: stop.signal,
    stdout: consoleOut,
    stderr: runErr,
    report,
  }).then(
    (code) => {
      status = code;
      ended = `the app exited (status ${code}${lastLineNote(consoleOut)})`;
    },
    (err: unknown) => {
      failure ??= err;
      ended = "the VM failed";
    },
  );

  let probeError: unknown;
  try {
    const deadline = Date.now() + o.readyTimeoutMs;
    await waitForProbes(o.probes, ports, deadline, () => ended);
    if (o.probes.length) await sleepUnless(o.settleMs, () => ended !== undefined);
  } catch (err) {
    probeError = err;
  } finally {
    if (o.probes.length) stop.abort();
    await run;
  }
  // What kept the VM from running comes first: the probes could not have passed.
  if (failure instanceof RunFailure) throw new EnvironmentError(failure.message);
  if (failure) throw failure;
  if (probeError) throw probeError;
  if (report.exitCode === undefined) {
    const why =
      status === EXIT_KILLED
        ? `the app did not stop within ${o.stopGraceMs / 1000} s of Ctrl-Alt-Del (SIGINT)`
        : (runMessages.trim().split("\n").pop() ?? `the VM ended with status ${status}`);
    throw new UserError(`${why}; no ${o.trace ? "trace" : "exit report"} from the init`);
  }
  return {
    status: status!,
    traced: report.traced,
    lost: report.lost,
    ...(report.recorder ? { recorder: report.recorder } : {}),
    ports,
  };
}

function lastLineNote(c: TraceCollector): string {
  const l = c.lastLine();
  return l ? `; last console line: ${JSON.stringify(l.slice(0, 160))}` : "";
}

async function sleepUnless(ms: number, stopNow: () => boolean): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until && !stopNow()) await new Promise((r) => setTimeout(r, Math.min(100, ms)));
}
