/**
 * `slimroot run --timeline`: where the time of one boot went, from what the host saw and what
 * the guest said. Pure: it reads the console lines (each with the host time its first byte
 * arrived at), the init's own milestones (report.ts: SLIMROOT_TIME) and the host time the
 * boot ended, and splits [VMM start, end] into segments.
 *
 * Three clocks meet here:
 * - host: milliseconds since the VMM process was spawned (performance.now());
 * - printk: the kernel's timestamps (`printk.time=1`), its local clock from about kernel entry;
 * - the init's CLOCK_MONOTONIC, anchored on the kernel's "Run /init as init process" line
 *   (the init reads its clock first thing), so only its differences are used.
 * Kernel milestones are where their console lines reached the host (host clock). The kernel's
 * clock start is put on the host clock by the smallest (host arrival - printk time) over the
 * timestamped lines: the line that reached the host with the least delay (the first lines come
 * late: the kernel replays its buffer when the serial console starts). The init's milestones
 * are differences on its clock, added to the arrival of the kernel's "Run /init" line.
 *
 * Every segment is the difference of two consecutive boundaries on the host clock (clamped
 * to never go back), so the segments sum to the total exactly.
 */

import { STANDBY_SIGNAL } from "./standby.js";

/** One console line and when its first byte reached the host (ms since the VMM was spawned). */
export interface ConsoleLine {
  hostMs: number;
  text: string;
}

/** host: the host's clock (when a console line came); guest: a difference on the guest's clock; host+guest: one end each. */
export type Clock = "host" | "guest" | "host+guest";

/** Which part of the boot a segment is (what a program reading the timeline, bench, keys on). */
export type SegmentId =
  | "setup"
  | "decompress"
  | "early"
  | "initcalls"
  | "to-init"
  | "init"
  // run --probe: the app until its probe first passed (then "app" is the rest, until it exited).
  | "probe"
  | "app"
  | "report"
  // A resume (resumeTimeline): slimroot's own steps before the VMM, then QEMU's, then the guest's.
  | "cli"
  | "prepare"
  | "vmm"
  | "checks"
  | "load"
  | "standby"
  | "reseed";

export interface Segment {
  id: SegmentId;
  what: string;
  /** Where it starts and how long it is, ms on the host clock. */
  startMs: number;
  ms: number;
  /** Which clock(s) its two ends were read on. */
  clock: Clock;
}

export interface Initcall {
  name: string;
  ms: number;
}

export interface Timeline {
  segments: Segment[];
  /** Host ms from the VMM's spawn to the end (the exit report's arrival). */
  totalMs: number;
  /** printk time 0 on the host clock; undefined: no timestamped line came. */
  offsetMs: number | undefined;
  /** Slowest first. */
  initcalls: Initcall[];
  /** The host's wall clock (Unix ms) when the VMM was spawned: puts another process's times (bench's probe) on this timeline. */
  vmmStartEpochMs?: number;
  /** A resume: slimroot's own steps before the VMM was spawned (negative starts), in order, ending at 0. */
  before?: Segment[];
}

/** Set by a program driving `run --timeline` (bench): the file run writes the Timeline to, as JSON. */
export const TIMELINE_FILE_ENV = "SLIMROOT_TIMELINE_FILE";

/** The kernel command line for a timed boot: timestamps, initcall times, every message shown. */
export function timelineCmdline(cmdline: string): string {
  const args = cmdline.split(/\s+/).filter((a) => a && a !== "quiet" && !a.startsWith("loglevel="));
  // initcall_debug prints at KERN_DEBUG: ignore_loglevel lets it reach the console.
  for (const a of ["printk.time=1", "initcall_debug", "ignore_loglevel"]) if (!args.includes(a)) args.push(a);
  return args.join(" ");
}

const PRINTK = /^\[\s*(\d+)\.(\d{6})\]\s?(.*)$/;
/** `initcall foo+0x0/0x30 [mod] returned 0 after 1234 usecs` (init/main.c, %pS). */
const INITCALL =
  /^initcall (\S+?)(?:\+0x[0-9a-f]+\/0x[0-9a-f]+)?(?: \[(\S+)\])? returned -?\d+ after (\d+) usecs/;

interface Stamped {
  hostMs: number;
  guestMs: number;
  text: string;
}

/** The printk-timestamped lines, with their guest time in ms. */
export function stampedLines(lines: readonly ConsoleLine[]): Stamped[] {
  const out: Stamped[] = [];
  for (const l of lines) {
    const m = PRINTK.exec(l.text.replace(/\r+$/, ""));
    if (m) out.push({ hostMs: l.hostMs, guestMs: Number(m[1]) * 1000 + Number(m[2]) / 1000, text: m[3]! });
  }
  return out;
}

/**
 * Every initcall the kernel timed, slowest first. A kernel without kallsyms prints addresses:
 * `symbols` (from its vmlinux) names them.
 */
export function initcalls(lines: readonly ConsoleLine[], symbols?: ReadonlyMap<bigint, string>): Initcall[] {
  const out: Initcall[] = [];
  for (const s of stampedLines(lines)) {
    const m = INITCALL.exec(s.text);
    if (!m) continue;
    const fn = /^0x[0-9a-f]+$/.test(m[1]!) ? (symbols?.get(BigInt(m[1]!)) ?? m[1]!) : m[1]!;
    out.push({ name: m[2] ? `${fn} [${m[2]}]` : fn, ms: Number(m[3]) / 1000 });
  }
  return out.sort((a, b) => b.ms - a.ms);
}

export interface TimelineInput {
  lines: readonly ConsoleLine[];
  /** The init's milestones (init, app, exit), µs on its CLOCK_MONOTONIC. */
  initTimes: Readonly<Record<string, number>>;
  /** Host ms when the boot was over (the exit report arrived). */
  endMs: number;
  /** The kernel's function symbols (kernel/symbols.ts), for initcalls printed as addresses. */
  symbols?: ReadonlyMap<bigint, string>;
  /** `run --probe`: host ms (since the VMM's spawn) when the probe first passed. */
  readyMs?: number;
}

export function buildTimeline(input: TimelineInput): Timeline {
  const stamped = stampedLines(input.lines);
  // Lines stamped 0.000000 were printed before the kernel's clock ran: no use for aligning.
  const live = stamped.filter((s) => s.guestMs > 0);
  const offsetMs = live.length ? Math.min(...live.map((s) => s.hostMs - s.guestMs)) : undefined;
  // A kernel milestone is placed where its line reached the host (the console is synchronous
  // once it runs), not at offset + its printk time: the kernel's clock runs slow until the
  // scheduler's clock is marked stable (its early clock is held to the tick, and ticks come
  // late under emulation), so one offset for the whole boot would not hold.
  const arrived = (pred: (t: string) => boolean) => stamped.find((x) => pred(x.text))?.hostMs;
  const host = (pred: (t: string) => boolean) => input.lines.find((l) => pred(l.text))?.hostMs;

  const runInit = arrived((t) => t.startsWith("Run /init as init process"));
  const t = input.initTimes;
  // The init's clock, aligned by one marker: it reads it first thing, as its "Run /init" line goes out.
  const sinceInit = (name: string) =>
    runInit !== undefined && t.init && t[name] ? runInit + (t[name]! - t.init) / 1000 : undefined;
  // x86's real-mode setup code prints this before the kernel is decompressed.
  const setup = host((l) => l.startsWith("Probing EDD"));

  // [boundary, what the segment that ends there was, its clock]; absent boundaries drop out.
  const marks: [number | undefined, SegmentId, string, Clock][] = [
    [setup, "setup", "VMM start until the kernel's setup code ran", "host"],
    [
      offsetMs,
      "decompress",
      setup === undefined
        ? "VMM start, kernel load and decompression, until the kernel's clock ran"
        : "kernel decompression, until the kernel's clock ran",
      "host+guest",
    ],
    [
      arrived((l) => l.startsWith("calling ")),
      "early",
      "kernel early boot (until the first initcall)",
      "host",
    ],
    [
      arrived((l) => l.startsWith("Freeing unused kernel image")),
      "initcalls",
      "initcalls (with the initramfs unpacked)",
      "host",
    ],
    [runInit, "to-init", "freeing init memory, starting /init", "host"],
    [sinceInit("app"), "init", "init: mounts, modules, network, until the app started", "guest"],
    [input.readyMs, "probe", "the app, until the probe first passed", "host"],
    [
      sinceInit("exit"),
      "app",
      input.readyMs === undefined ? "the app, until it exited" : "the app, serving, until it exited",
      "guest",
    ],
    [input.endMs, "report", "the init's report, until the host read it", "host+guest"],
  ];
  const segments: Segment[] = [];
  let at = 0;
  for (const [end, id, what, clock] of marks) {
    if (end === undefined) continue;
    const to = Math.min(Math.max(end, at), input.endMs);
    segments.push({ id, what, startMs: at, ms: to - at, clock });
    at = to;
  }
  return { segments, totalMs: input.endMs, offsetMs, initcalls: initcalls(input.lines, input.symbols) };
}

/**
 * A resume's host marks (run.ts, qemu-launcher.ts), ms on this process's performance clock,
 * whose 0 is the process's start (Node's timeOrigin).
 */
export interface ResumeMarks {
  /** runImage began: Node, the CLI's modules and its options are behind. */
  run: number;
  /** QEMU spawned (the snapshot's header read, the VM's directory written, the ports checked). */
  spawned: number;
  /** QEMU's QMP socket answered. */
  vmmUp: number;
  /** Every check passed (QEMU's version, the kernel's and disks' digests), run beside QEMU's start. */
  checked: number;
  /** QEMU had loaded the saved state (paused, waiting for us). */
  loaded: number;
  /** `run --standby`: the signal to resume came (the VM stood by, paused, from `loaded`). */
  go?: number;
  /** The init answered "resumed" (pool reseeded, clock set, the app's processes continued) and the ports were forwarded. */
  resumed: number;
  /** `run --probe`: the probe first passed. */
  ready?: number;
}

/**
 * `run APP.snap --timeline`: where a resume's time went, all on the host clock (no kernel
 * boots, so the console has no milestones). Segments run from the VMM's spawn to the app
 * reachable; `before` is what slimroot did first, from the process's start. The checks run
 * beside QEMU's start: only the time QEMU waited for them is a segment. A standby's wait is
 * a segment of its own, so what follows it is the resume's own cost.
 */
export function resumeTimeline(m: ResumeMarks): Timeline {
  const seg = (id: SegmentId, what: string, from: number, to: number): Segment => ({
    id,
    what,
    startMs: from - m.spawned,
    ms: to - from,
    clock: "host",
  });
  const at = [
    m.run,
    m.spawned,
    m.vmmUp,
    m.checked,
    m.loaded,
    m.go ?? m.loaded,
    m.resumed,
    m.ready ?? m.resumed,
  ];
  // Clamped to never go back, as a boot's boundaries are.
  for (let i = 1; i < at.length; i++) at[i] = Math.max(at[i]!, at[i - 1]!);
  const [run, spawned, vmmUp, checked, loaded, go, resumed, ready] = at as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  return {
    before: [
      seg("cli", "slimroot's process start until run began (Node, the CLI)", Math.min(0, run), run),
      seg(
        "prepare",
        "the snapshot's header, the VM's directory, the ports, until QEMU was spawned",
        run,
        spawned,
      ),
    ],
    segments: [
      seg("vmm", "QEMU's start, until its QMP socket answered", spawned, vmmUp),
      seg(
        "checks",
        "waiting for the checks (QEMU's version, the RAM file's, kernel's and disks' digests)",
        vmmUp,
        checked,
      ),
      seg(
        "load",
        "loading the saved state (zstd, QEMU's migration stream; the RAM file is mapped, not read)",
        checked,
        loaded,
      ),
      ...(m.go === undefined
        ? []
        : [
            seg("standby", `standing by, loaded and paused, until ${STANDBY_SIGNAL} (--standby)`, loaded, go),
          ]),
      seg("reseed", "cont, the init's reseed and clock, the ports forwarded", go, resumed),
      ...(m.ready === undefined
        ? []
        : [seg("probe", "the app through its forwarded port, until the probe first passed", resumed, ready)]),
    ],
    totalMs: ready - spawned,
    offsetMs: undefined,
    initcalls: [],
  };
}

const ms = (n: number) => `${Math.round(n)} ms`;

/** The timeline in words, a line each (run prints them on stderr). */
export function describeTimeline(tl: Timeline, top = 5): string[] {
  if (tl.before) return describeResume(tl);
  const width = Math.max(...tl.segments.map((s) => ms(s.ms).length), 4);
  const sum = tl.segments.reduce((n, s) => n + s.ms, 0);
  const clockNote = {
    host: "host clock",
    guest: "guest clock",
    "host+guest": "host and guest clocks",
  };
  return [
    "timeline (ms since the VMM was started; host clock: when a console line reached the host; guest clock: the init's own)",
    ...tl.segments.map(
      (s) =>
        `  at ${ms(s.startMs).padStart(8)}  ${ms(s.ms).padStart(width)}  ${s.what} (${clockNote[s.clock]})`,
    ),
    `  total ${ms(tl.totalMs)} (host clock: VMM start until the exit report); the segments sum to ${ms(sum)}`,
    tl.offsetMs === undefined
      ? "  no timestamped kernel line seen: the guest's part is not split"
      : `  the kernel's clock started at ${ms(tl.offsetMs)} on the host clock (by its least delayed console line)`,
    ...(tl.initcalls.length
      ? [
          `  slowest initcalls (the kernel's own times): ${tl.initcalls
            .slice(0, top)
            .map((c) => `${c.name} ${c.ms.toFixed(1)} ms`)
            .join(", ")}`,
        ]
      : []),
    "  (a timed boot prints every kernel message and initcall on the serial console, which slows it)",
  ];
}

/** A resume's timeline in words (resumeTimeline). */
function describeResume(tl: Timeline): string[] {
  const all = [...(tl.before ?? []), ...tl.segments];
  const width = Math.max(...all.map((s) => ms(s.ms).length), 4);
  const before = (tl.before ?? []).reduce((n, s) => n + s.ms, 0);
  const standby = tl.segments.find((s) => s.id === "standby");
  const probed = tl.segments.some((s) => s.id === "probe");
  return [
    "resume timeline (ms since QEMU was spawned, host clock)",
    ...all.map((s) => `  at ${ms(s.startMs).padStart(8)}  ${ms(s.ms).padStart(width)}  ${s.what}`),
    `  total ${ms(before + tl.totalMs)} from slimroot's start (${ms(before)} before QEMU, ${ms(tl.totalMs)} after); ${probed ? "the probe passed at its end" : "the app answers once the host's network reaches it"}`,
    ...(standby
      ? [
          `  from ${STANDBY_SIGNAL} until ${probed ? "the probe passed" : "the app continued"}: ${ms(tl.totalMs - (standby.startMs + standby.ms))}`,
        ]
      : []),
  ];
}
