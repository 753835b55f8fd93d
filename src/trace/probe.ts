/**
 * Probes: what `slimroot trace` does to the app from the host while the guest records, and
 * what `build` does again to check the minimized image. Each probe is retried until it passes
 * or its deadline comes (the first ones double as the wait for the app to be ready).
 */
import { spawn } from "node:child_process";
import { connect } from "node:net";
import { UserError } from "../util/errors.js";
import { freePort } from "../util/net.js";
import type { PortForward } from "../vm/ports.js";

export type Probe =
  /** GET http://127.0.0.1:HOSTPORT/PATH: a 2xx or 3xx answer passes. */
  | { kind: "http"; spec: string; port: number; path: string }
  /** Connect; with `send`, write it; with `expect`, wait for that text in the answer. */
  | { kind: "tcp"; spec: string; port: number; send?: string; expect?: string }
  /** `sh -c COMMAND` on the host with SLIMROOT_PORT_<guest>=<host>: exit 0 passes. */
  | { kind: "exec"; spec: string; command: string; ports: number[] };

const USAGE = "expected http:PORT[/PATH], tcp:PORT[:SEND[:EXPECT]] or exec:COMMAND";

function portOf(text: string, spec: string): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= 1 && n <= 65535))
    throw new UserError(
      `--probe ${spec}: ${text ? `${JSON.stringify(text)} is not` : "expected"} a port number (1-65535: the app's port in the guest)`,
    );
  return n;
}

/** tcp fields: split at ':' not preceded by '\'; `\n \r \t \\ \:` unescaped. */
function tcpFields(text: string): string[] {
  const out: string[] = [];
  let cur = "";
  const esc: Record<string, string> = { n: "\n", r: "\r", t: "\t", "\\": "\\", ":": ":" };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "\\" && i + 1 < text.length && esc[text[i + 1]!] !== undefined) {
      cur += esc[text[++i]!];
    } else if (c === ":") {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out;
}

export function parseProbe(spec: string): Probe {
  const colon = spec.indexOf(":");
  const kind = colon < 0 ? "" : spec.slice(0, colon);
  const rest = spec.slice(colon + 1);
  if (kind === "http") {
    const m = /^([^/]*)(\/.*)?$/.exec(rest)!;
    return { kind, spec, port: portOf(m[1]!, spec), path: m[2] ?? "/" };
  }
  if (kind === "tcp") {
    const [port, send, expect, ...extra] = tcpFields(rest);
    if (extra.length)
      throw new UserError(`--probe ${spec}: too many ':' fields (write a ':' in SEND as \\:)`);
    return {
      kind,
      spec,
      port: portOf(port!, spec),
      ...(send ? { send } : {}),
      ...(expect ? { expect } : {}),
    };
  }
  if (kind === "exec") {
    if (!rest.trim()) throw new UserError(`--probe ${spec}: no command`);
    const ports = [...rest.matchAll(/SLIMROOT_PORT_(\d+)/g)].map((m) => portOf(m[1]!, spec));
    return { kind, spec, command: rest, ports: [...new Set(ports)] };
  }
  throw new UserError(`--probe ${spec}: ${USAGE}`);
}

/**
 * A guest port nothing listens on. QEMU's user network also holds a forwarded connection
 * open while the guest is still booting (nothing there to refuse it yet), so a tcp: probe
 * without EXPECT passed before the app listened. A connection to this port closing at once
 * shows the guest's network answers; only then does a held connection mean the app.
 */
export const UNUSED_GUEST_PORT = 1;

/** Guest ports a probe talks to (a tcp: probe without EXPECT also needs the unused one). */
export function probePorts(p: Probe): number[] {
  if (p.kind === "exec") return p.ports;
  if (p.kind === "tcp" && !p.expect && p.port !== UNUSED_GUEST_PORT) return [p.port, UNUSED_GUEST_PORT];
  return [p.port];
}

/** Guest port -> host port, as the VM's forwards say. */
export type PortMap = ReadonlyMap<number, number>;

/** A TCP forward a probe can reach on 127.0.0.1 (where every attempt connects). */
const probeable = (f: PortForward) =>
  f.proto === "tcp" && (f.hostAddr === "127.0.0.1" || f.hostAddr === "0.0.0.0");

/**
 * The user's -p forwards, plus a free loopback port for each guest port the probes need that
 * none of them forwards on 127.0.0.1 (a forward on another address, 127.0.0.2 or the LAN's,
 * gets a second one: QEMU forwards several host ports to one guest port).
 */
export async function probeForwards(
  probes: readonly Probe[],
  user: readonly PortForward[],
): Promise<PortForward[]> {
  const out = [...user];
  for (const g of probes.flatMap(probePorts))
    if (!out.some((f) => probeable(f) && f.guestPort === g))
      out.push({ proto: "tcp", hostAddr: "127.0.0.1", hostPort: await freePort(), guestPort: g });
  return out;
}

/** Guest port -> host port of the forwards a probe reaches on 127.0.0.1 (the first for each). */
export function portMap(forwards: readonly PortForward[]): PortMap {
  const out = new Map<number, number>();
  for (const f of forwards) if (probeable(f) && !out.has(f.guestPort)) out.set(f.guestPort, f.hostPort);
  return out;
}

/**
 * A probe whose passing is timed (bench's boots, `run --probe`): asked every 20 ms, so a ready
 * time is read to within that (at trace's 250 ms, bench's ready times fell on a 250 ms grid, up
 * to 0.14x of a 1.8 s boot; a refused attempt costs the guest one reset packet); an HTTP
 * attempt, or a tcp: one waiting for its EXPECT, gives up after 500 ms and asks again, since
 * one sent before the guest's network is up waits on QEMU's forwarder retrying its connection
 * with TCP backoff (docs/bench.md): it read 5 s late.
 */
export const TIMED_PROBE = { attemptMs: 500, retryMs: 20 } as const;

/** Why one attempt failed; undefined when it passed. */
type Attempt = Promise<string | undefined>;

/** How long one attempt may take unless the caller says (a slow app's first answer). */
const ATTEMPT_MS = 10_000;

/** How one attempt is bounded: `attemptMs` for its answer; `signal` ends it at once (the VM ended). */
export interface AttemptOptions {
  attemptMs?: number;
  signal?: AbortSignal;
}

const ENDED = "ended";

async function httpAttempt(p: Extract<Probe, { kind: "http" }>, host: number, o: AttemptOptions): Attempt {
  try {
    const res = await fetch(`http://127.0.0.1:${host}${p.path}`, {
      redirect: "manual",
      // No connection left open in the app after it: a kept-alive one ended up in snapshots, and
      // lighttpd stopped within its keep-alive time exited 1 (it counts connections still open).
      headers: { connection: "close" },
      signal: AbortSignal.any([
        AbortSignal.timeout(o.attemptMs ?? ATTEMPT_MS),
        ...(o.signal ? [o.signal] : []),
      ]),
    });
    await res.arrayBuffer(); // the whole answer: the server reads what it serves
    return res.status >= 200 && res.status < 400 ? undefined : `HTTP ${res.status}`;
  } catch (err) {
    if (o.signal?.aborted) return ENDED;
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return cause?.code ?? cause?.message ?? (err as Error).message;
  }
}

/**
 * QEMU's user network accepts a forwarded connection before it knows whether the guest
 * listens, and closes it a moment later if not: an open connection passes only once it
 * has lasted QUIET_MS or brought data.
 */
const QUIET_MS = 500;

async function tcpAttempt(
  p: Extract<Probe, { kind: "tcp" }>,
  host: number,
  unused: number | undefined,
  o: AttemptOptions,
): Attempt {
  // Without EXPECT a connection passes by lasting QUIET_MS: no shorter bound than the default.
  const unbounded = o.signal ? { signal: o.signal } : {};
  if (
    unused !== undefined &&
    (await tcpTry({ kind: "tcp", spec: "", port: UNUSED_GUEST_PORT }, unused, unbounded)) === undefined
  )
    return "the guest's network does not answer yet";
  return tcpTry(p, host, p.expect ? o : unbounded);
}

/**
 * How every attempt that waits on something ends: the first call of the returned `finish`
 * wins, its time limit (`limitWhy` after `o.attemptMs`, default 10 s) and `o.signal` call it
 * too, and `cleanup` runs once before it resolves. An already aborted signal ends it at once.
 */
function settleOnce(
  resolve: (why: string | undefined) => void,
  o: AttemptOptions,
  limitWhy: (ms: number) => string,
  cleanup: () => void,
): (why: string | undefined) => void {
  let done = false;
  const finish = (why: string | undefined) => {
    if (done) return;
    done = true;
    clearTimeout(limit);
    o.signal?.removeEventListener("abort", abort);
    cleanup();
    resolve(why);
  };
  const limitMs = o.attemptMs ?? ATTEMPT_MS;
  const limit = setTimeout(() => finish(limitWhy(limitMs)), limitMs);
  const abort = () => finish(ENDED);
  o.signal?.addEventListener("abort", abort);
  if (o.signal?.aborted) abort();
  return finish;
}

function tcpTry(p: Extract<Probe, { kind: "tcp" }>, host: number, o: AttemptOptions): Attempt {
  return new Promise((resolve) => {
    const sock = connect({ host: "127.0.0.1", port: host });
    let got = "";
    let quiet: NodeJS.Timeout | undefined;
    const finish = settleOnce(
      resolve,
      o,
      (ms) => (p.expect ? `no ${JSON.stringify(p.expect)} within ${ms / 1000} s` : "timed out"),
      () => {
        clearTimeout(quiet);
        sock.destroy();
      },
    );
    sock.on("connect", () => {
      if (p.send) sock.write(p.send);
      if (!p.expect) quiet = setTimeout(() => finish(undefined), QUIET_MS);
    });
    sock.on("data", (d: Buffer) => {
      got += d.toString("latin1");
      if (!p.expect || got.includes(p.expect)) finish(undefined);
    });
    sock.on("error", (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
    sock.on("close", () =>
      finish(p.expect ? `closed before ${JSON.stringify(p.expect)} came` : "connection closed"),
    );
  });
}

/**
 * `sh -c COMMAND` in a process group of its own, so that the end of an attempt (its time
 * limit, the VM's end) kills whatever the command started too: a `sleep` left behind held the
 * attempt, and the process waiting for it, open until it finished.
 */
function execAttempt(p: Extract<Probe, { kind: "exec" }>, ports: PortMap, o: AttemptOptions): Attempt {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [guest, host] of ports) env[`SLIMROOT_PORT_${guest}`] = String(host);
  return new Promise((resolve) => {
    const child = spawn("sh", ["-c", p.command], {
      env,
      stdio: ["ignore", "ignore", "pipe"],
      detached: true,
    });
    let stderr = "";
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    };
    // Its own group does not get the terminal's Ctrl-C: killed with us however we exit.
    process.on("exit", killGroup);
    const finish = settleOnce(
      resolve,
      o,
      (ms) => `still running after ${ms / 1000} s`,
      () => {
        process.off("exit", killGroup);
        killGroup(); // what it left behind
      },
    );
    child.stderr.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    child.on("error", (err) => finish(`cannot run sh: ${err.message}`));
    // "exit", not "close": a process it left behind may hold its stderr open.
    child.on("exit", (code, signal) => {
      if (code === 0) return finish(undefined);
      const last = stderr.trim().split("\n").pop();
      finish(`${signal ? `killed by ${signal}` : `exit status ${code}`}${last ? ` (${last.trim()})` : ""}`);
    });
  });
}

/**
 * One try of `p`: undefined when it passed, else why not. `attemptMs` bounds an HTTP request
 * or a tcp: wait for EXPECT: a request sent before the guest's network is up waits on QEMU's
 * forwarder retrying its connection with TCP backoff, so a timer (bench, run) asks again sooner
 * instead. An exec: command gets the default 10 s unless `attemptMs` is longer.
 */
export function attemptProbe(p: Probe, ports: PortMap, o: AttemptOptions = {}): Attempt {
  if (p.kind === "exec")
    return execAttempt(p, ports, {
      ...o,
      attemptMs: Math.max(o.attemptMs ?? ATTEMPT_MS, ATTEMPT_MS),
    });
  const host = ports.get(p.port);
  if (host === undefined) return Promise.resolve(`guest port ${p.port} is not forwarded`);
  if (p.kind === "http") return httpAttempt(p, host, o);
  const guard = p.expect || p.port === UNUSED_GUEST_PORT ? undefined : ports.get(UNUSED_GUEST_PORT);
  return tcpAttempt(p, host, guard, o);
}

/** A probe that never passed: the CLI prints its message as the one-line error. */
export class ProbeFailure extends UserError {}

const RETRY_MS = 250;

export interface WaitOptions extends AttemptOptions {
  /** Pause between attempts (default 250 ms). */
  retryMs?: number;
  /** Told why each failed attempt failed. */
  onFailure?: (why: string) => void;
}

/**
 * Tries `p` until it passes, the deadline passes, or `gone()` says the app has ended (its
 * reason then). Throws a ProbeFailure naming the probe and its last failure. `o.signal` ends
 * the attempt under way at once (the VM has ended: gone() says so).
 */
export async function waitForProbe(
  p: Probe,
  ports: PortMap,
  deadline: number,
  gone: () => string | undefined,
  o: WaitOptions = {},
): Promise<void> {
  let why: string | undefined;
  for (;;) {
    const ended = gone();
    if (ended)
      throw new ProbeFailure(`probe ${p.spec}: ${ended} before it passed${why ? ` (last: ${why})` : ""}`);
    const now = await attemptProbe(p, ports, o);
    if (now === undefined) return;
    if (now !== ENDED) {
      why = now;
      o.onFailure?.(why);
    }
    if (Date.now() >= deadline)
      throw new ProbeFailure(`probe ${p.spec}: still failing when the time ran out: ${why}`);
    await new Promise((r) => setTimeout(r, o.retryMs ?? RETRY_MS));
  }
}

/** Each of `probes` in turn, as waitForProbe (bench's boots, trace, `run --probe`). */
export async function waitForProbes(
  probes: readonly Probe[],
  ports: PortMap,
  deadline: number,
  gone: () => string | undefined,
  o: WaitOptions = {},
): Promise<void> {
  for (const p of probes) await waitForProbe(p, ports, deadline, gone, o);
}
