/**
 * `slimroot run`: boots an image under a VMM (QEMU or Firecracker, see launcher.ts) with its
 * app's console on our stdout and exits with the app's status. See docs/run.md for the exit
 * codes and the stop sequence.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { Readable } from "node:stream";
import { bootKernelSymbols } from "../kernel/symbols.js";
import { OutputDir } from "../output/dir.js";
import type { InputPath } from "../output/output.js";
import { UserError } from "../util/errors.js";
import { hostExecutable } from "../util/host-path.js";
import { shellQuote } from "../util/shell.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";
import { requireTools } from "../util/tools.js";
import { ConsoleWatcher } from "./console.js";
import type { VolumeSpec } from "./disks.js";
import { bootFacts } from "./facts.js";
import { firecrackerLauncher } from "./firecracker-launcher.js";
import { type Launch, type Launcher, type ResumeStep, RunFailure } from "./launcher.js";
import { failureReason } from "./panic.js";
import { type BootOptions, type BootPlan, describePlan, planBoot, type Vmm } from "./plan.js";
import { qemuBinary } from "./qemu.js";
import { qemuLauncher } from "./qemu-launcher.js";
import { GuestReport } from "./report.js";
import { checkResume, planResume, snapshotOf } from "./resume.js";
import { STANDBY_LINE, STANDBY_SIGNAL } from "./standby.js";
import {
  buildTimeline,
  type ConsoleLine,
  describeTimeline,
  type ResumeMarks,
  resumeTimeline,
  type Timeline,
} from "./timeline.js";

export { RunFailure };

/** Exit statuses of `slimroot run` besides the app's own. */
export const EXIT_FAILED = 125;
export const EXIT_TIMEOUT = 124;
export const EXIT_KILLED = 137;

const LAUNCHERS: Record<Vmm, Launcher> = { qemu: qemuLauncher, firecracker: firecrackerLauncher };

export interface RunRequest extends Omit<BootOptions, "vmm" | "reportKey"> {
  image: string;
  /** The VMM (default qemu). */
  vmm?: Vmm;
  dryRun: boolean;
  /** With timeline: given the boot's timeline once it is built (the CLI writes it for bench). */
  onTimeline?: (tl: Timeline) => void;
  /** With dryRun: print the plan as JSON on stdout instead of the command. */
  json?: boolean;
  /** With dryRun: the directory the VM's files go to (default: a temp directory, kept). */
  outDir?: string;
  /** More disks (`--volume FILE:/path[:ro]`). */
  volumes?: readonly VolumeSpec[];
  /**
   * Aborting it stops the app gracefully: Ctrl-Alt-Del, which the init turns into SIGTERM for
   * the app, then the VMM is killed after the grace period. A number as the abort reason is
   * the status to report if the VM ends without an exit report (default 143, as for SIGTERM).
   */
  stop?: AbortSignal;
  /** Aborting it kills the VMM at once. */
  kill?: AbortSignal;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Receives the init's report (its key goes to the guest); default: a fresh one (a snapshot's own when resuming). */
  report?: GuestReport;
  /**
   * slimroot snapshot: run while the VM runs, with its control channel (control.ts); when it
   * resolves, the VM is ended and runImage resolves 0; when it throws, runImage throws that.
   */
  attached?: (vm: NonNullable<Launch["control"]>, plan: BootPlan, exited: () => boolean) => Promise<void>;
  /**
   * Resuming a snapshot (`run APP.snap --standby`): once its state is loaded, the VM waits,
   * paused, until this resolves (the CLI: on standby.ts's signal), then resumes; a stop
   * meanwhile ends it at once (its app has not run since the snapshot: nothing to stop
   * gracefully).
   */
  standby?: Promise<void>;
  /**
   * `run --probe`: `wait` is started when the VMM is (a resume's: once the app continues), and
   * resolves when the app answers; `gone` says, and `signal` aborts, when the VM has ended;
   * `onFailure` hears why each attempt failed. run then says "ready" on stderr with the time,
   * and the timeline gets the mark; `what` names the probes in those lines.
   */
  ready?: {
    what: string;
    wait: (
      gone: () => string | undefined,
      signal: AbortSignal,
      onFailure: (why: string) => void,
    ) => Promise<void>;
  };
  /** With dryRun: more files for the VM's directory (snapshot --vmm firecracker: its API requests, a script). */
  moreFiles?: (dir: string) => { name: string; text: string; mode?: number }[];
}

/** Runs the image; resolves with the exit status for `slimroot run`. */
export async function runImage(req: RunRequest): Promise<number> {
  const runAt = performance.now();
  if (req.outDir !== undefined && !req.dryRun) throw new UserError("-o DIR: only with --dry-run");
  if (req.json && !req.dryRun) throw new UserError("--json: only with --dry-run");
  if (req.ready && req.dryRun) throw new UserError(`--probe ${req.ready.what}: not with --dry-run`);
  // A snapshot is resumed (resume.ts): its init already holds its report key.
  const snapshot = await snapshotOf(req.image);
  if (req.standby && (!snapshot || req.dryRun))
    throw new UserError(
      req.dryRun
        ? "--standby: not with --dry-run"
        : `--standby: ${req.image} is not a snapshot (slimroot snapshot IMAGE -o APP.snap makes one)`,
    );
  // This boot's key: only a report that opens with it is the init's (report.ts).
  const report = req.report ?? new GuestReport(snapshot?.header.reportKey);
  const options: BootOptions = { ...req, vmm: req.vmm ?? "qemu", reportKey: report.key };
  // `scratch`: the VM's files unless -o DIR; `work`: what reading the facts makes (an
  // extracted built-in image, a modules archive), never kept.
  const scratch = await mkdtemp(join(tmpdir(), "slimroot-run-"));
  const work = await mkdtemp(join(tmpdir(), "slimroot-facts-"));
  // Removed by the CLI's exit paths too (a closed stdout ends the process at once).
  trackTempPath(scratch);
  trackTempPath(work);
  let keep = false;
  let out: OutputDir | undefined;
  try {
    const plan = snapshot
      ? planResume(snapshot, options, req.volumes?.length ?? 0)
      : planBoot(await bootFacts(req.image, req.volumes ?? [], options, work), options);
    // A resume's files are checked while QEMU starts; it loads no state before they pass.
    const checks = snapshot ? timedChecks(checkResume(snapshot)) : undefined;
    // The VMM is run last, after the kernel and initrd are ready: said missing at once instead.
    // (Firecracker is no Debian package: its launcher's preflight says where to get it.)
    if (!req.dryRun && plan.vmm === "qemu") requireTools("run", [qemuBinary(plan.arch)]);
    // The VM's files: in -o DIR (new, empty or an earlier dry run's, never over an input) or the scratch.
    // A boot's scratch is removed when the VM ends: no fsync (a 12 MiB initrd's took 8 ms here).
    out = await OutputDir.open(req.outDir ?? scratch, "-o", runInputs(req), { durable: req.dryRun });
    const launch = await LAUNCHERS[plan.vmm].render(plan, out);
    const dir = out.path;
    const more = req.dryRun ? (req.moreFiles?.(dir) ?? []) : [];
    await out.write(
      more.map((f) => ({
        target: out!.file(f.name),
        source: Readable.from([f.text]),
        mode: f.mode ?? 0o644,
      })),
    );
    await out.commit();
    const notes = () => {
      for (const n of plan.notes) req.stderr.write(`slimroot: ${n}\n`);
    };
    if (req.dryRun) {
      await checks;
      keep = req.outDir === undefined;
      notes();
      for (const line of describePlan(plan)) req.stderr.write(`slimroot: plan: ${line}\n`);
      req.stdout.write(
        req.json
          ? `${JSON.stringify({ ...plan, reportKey: undefined, command: launch.command }, null, 2)}\n`
          : `${shellQuote(launch.command)}\n`,
      );
      if (plan.resume)
        req.stderr.write(
          "slimroot: dry run: this command starts QEMU waiting for its state (-incoming defer); run then loads it over QMP, continues the guest and forwards the ports: the command alone does not resume\n",
        );
      req.stderr.write(
        req.outDir !== undefined
          ? `slimroot: dry run: the VM's files are in ${out.path}\n`
          : `slimroot: dry run: the VM's files are kept in ${out.path} (remove it when done)\n`,
      );
      return 0;
    }
    await launch.preflight();
    // Asked to stop while preparing: nothing has run, so nothing to stop.
    if (req.stop?.aborted || req.kill?.aborted) {
      const reason: unknown = req.stop?.reason;
      return typeof reason === "number" ? reason : STOPPED_STATUS;
    }
    notes();
    // A kernel without kallsyms (slimroot's) names its initcalls by address.
    const symbols =
      req.timeline && !plan.resume
        ? await bootKernelSymbols(plan.kernel.path, plan.kernel.format === "elf")
        : undefined;
    return await boot(req, plan, launch, report, { runAt, checks }, symbols);
  } finally {
    await out?.discard();
    if (!keep) await rm(scratch, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
    untrackTempPath(scratch);
    untrackTempPath(work);
  }
}

/** The checks' promise, resolving with when they passed (performance.now()). */
function timedChecks(checks: Promise<void>): Promise<number> {
  const p = checks.then(() => performance.now());
  p.catch(() => {}); // awaited where it is used; an early failure is not unhandled
  return p;
}

/** What a run reads from the host, which its files must never replace. */
function runInputs(req: RunRequest): InputPath[] {
  return [
    { path: req.image, what: req.image },
    ...(req.kernel ? [{ path: req.kernel, what: `--kernel ${req.kernel}` }] : []),
    ...(req.modules ? [{ path: req.modules, what: `--modules ${req.modules}` }] : []),
    ...(req.volumes ?? []).map((v) => ({ path: v.file, what: `--volume ${v.file}` })),
  ];
}

/** What a stop request without a status reports when the VM ends without an exit report. */
const STOPPED_STATUS = 128 + 15;

/** Seconds for messages. */
const secs = (ms: number) => `${Math.round(ms / 100) / 10} s`;

/**
 * [binary, ...arguments] that start the VMM so that it dies with us, even when we are killed
 * with SIGKILL (no exit handler runs then): util-linux's setpriv (essential in Debian) sets
 * PR_SET_PDEATHSIG, which survives its exec of the VMM. Node cannot set it itself, and QEMU
 * 7.2 has no such option (-run-with came in 8.1). Without setpriv, the VMM is still killed
 * on every other way we end.
 */
export function guardedCommand(p: Pick<Launch, "command" | "notFound">): string[] {
  if (!hostExecutable(p.command[0]!)) throw new RunFailure(p.notFound);
  const setpriv = hostExecutable("setpriv");
  return setpriv ? [setpriv, "--pdeathsig", "KILL", "--", ...p.command] : [...p.command];
}

function boot(
  req: RunRequest,
  plan: BootPlan,
  p: Launch,
  report: GuestReport,
  resume: { runAt: number; checks: Promise<number> | undefined },
  symbols?: ReadonlyMap<bigint, string>,
): Promise<number> {
  const [binary, ...args] = guardedCommand(p) as [string, ...string[]];
  // Its own process group: a Ctrl-C on the terminal reaches only us, and we stop the app
  // gracefully instead of the VMM dying on the spot.
  const spawnedAt = performance.now();
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
  const timed = req.timeline && !plan.resume ? timeConsole(child.stdout, spawnedAt) : undefined;
  let vmmStderr = "";
  // The console's last bytes: a panic line may come split over several chunks.
  let consoleTail = "";
  let printed = false;
  let stopStatus: number | undefined;
  let timedOut = false;
  let killed = false;
  let exited = false;
  const timers: NodeJS.Timeout[] = [];
  // A standby's VM is loaded and paused, waiting for req.standby (resumeGuest).
  let standing = false;

  const kill = () => {
    if (!exited) child.kill("SIGKILL");
  };
  const killOnExit = () => kill();
  process.on("exit", killOnExit);

  let reportedAt: number | undefined;
  const watcher = new ConsoleWatcher(report, () => {
    reportedAt = performance.now() - spawnedAt;
    // The init has synced and released its disks before it reports (init/init.c finish()):
    // what follows is the kernel's restart, which a boot need not wait for. QEMU ends on
    // SIGTERM (flushing its disks); a VMM that does not end is killed.
    if (!exited) child.kill("SIGTERM");
    timers.push(setTimeout(kill, 5000));
  });
  watcher.on("data", (d: Buffer) => {
    printed = true;
    consoleTail = (consoleTail + d.toString("latin1")).slice(-8192);
  });
  child.stdout.pipe(watcher).pipe(req.stdout as NodeJS.WritableStream, { end: false });
  child.stderr.on("data", (d: Buffer) => {
    vmmStderr = (vmmStderr + d.toString()).slice(-8192);
  });

  const stop = () => {
    if (!p.requestStop || standing) {
      kill(); // the VMM cannot tell the guest, or its guest is paused in standby: end it now
      return;
    }
    const deadline = Date.now() + req.stopGraceMs;
    timers.push(
      setTimeout(() => {
        killed = !exited;
        kill();
      }, req.stopGraceMs),
    );
    p.requestStop(deadline, () => exited).catch((err: Error) => {
      // No way in (the VMM is going away, or never came up): the grace timer ends it.
      if (process.env.SLIMROOT_DEBUG) req.stderr.write(`slimroot: stop: ${err.message}\n`);
    });
  };

  const onStop = () => {
    if (stopStatus !== undefined || timedOut || exited) return;
    const reason: unknown = req.stop?.reason;
    stopStatus = typeof reason === "number" ? reason : STOPPED_STATUS;
    stop();
  };
  req.stop?.addEventListener("abort", onStop);
  if (req.stop?.aborted) onStop();
  req.kill?.addEventListener("abort", kill);
  if (req.kill?.aborted) kill();
  if (req.timeoutMs !== undefined) {
    timers.push(
      setTimeout(() => {
        if (stopStatus !== undefined || exited) return;
        timedOut = true;
        stop();
      }, req.timeoutMs),
    );
  }

  // A resume's own step, then a snapshot's work: either failing ends the VM with its error.
  let hostDone = false;
  let hostError: Error | undefined;
  const attached = req.attached;
  // A resume's steps, for its timeline: printed as soon as the app continues.
  const marks: Partial<ResumeMarks> = { run: resume.runAt, spawned: spawnedAt };
  // A resume's timeline is printed as soon as the app continues, or with --probe once it passed.
  let resumeTimelineDue = false;
  const printResumeTimeline = () => {
    resumeTimelineDue = false;
    const tl = resumeTimeline(marks as ResumeMarks);
    for (const l of describeTimeline(tl)) req.stderr.write(`slimroot: ${l}\n`);
    req.onTimeline?.({ ...tl, vmmStartEpochMs: performance.timeOrigin + spawnedAt });
  };
  // run --probe: tried from the VMM's start (a resume's: once the app continues; before, an
  // exec: probe might pass with the guest paused) until it passes or the VM ends.
  let probing = false;
  let probeFailure: string | undefined;
  const probeEnd = new AbortController();
  const startProbe = () => {
    if (!req.ready || probing) return;
    probing = true;
    const { what } = req.ready;
    const gone = () => (exited ? "the VM ended" : undefined);
    req.ready
      .wait(gone, probeEnd.signal, (why) => {
        probeFailure = why;
      })
      .then(
        () => {
          const readyAt = performance.now();
          marks.ready = readyAt;
          const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
          const go = marks.go === undefined ? "" : `, ${s(readyAt - marks.go)} after ${STANDBY_SIGNAL}`;
          req.stderr.write(
            `slimroot: ready: ${what} passed ${s(readyAt)} after slimroot started (${s(readyAt - spawnedAt)} after the VMM was spawned${go})\n`,
          );
          if (resumeTimelineDue) printResumeTimeline();
        },
        () => {}, // the VM ended first: said when it closes
      );
  };
  const mark = (step: ResumeStep) => {
    marks[step] = performance.now();
    if (step !== "resumed") return;
    startProbe();
    if (req.timeline && plan.resume) {
      resumeTimelineDue = true;
      if (!req.ready) printResumeTimeline();
    }
  };
  if (!plan.resume) startProbe();
  if (p.started || attached)
    (async () => {
      const checked = (resume.checks ?? Promise.resolve(spawnedAt)).then((at) => {
        marks.checked = at;
      });
      checked.catch(() => {}); // awaited by started, once QEMU is up
      const standby = req.standby;
      // A signal that came while the state loaded: the VM goes on at once, and says no standby.
      let signalled = false;
      void standby?.then(() => {
        signalled = true;
      });
      await p.started?.({
        checked,
        mark,
        ...(standby
          ? {
              standby: async () => {
                if (signalled) return;
                standing = true;
                // A fixed line, for whatever keeps a pool of standbys (docs/snapshot.md).
                req.stderr.write(`${STANDBY_LINE}\n`);
                await standby;
                standing = false;
              },
            }
          : {}),
      });
      if (attached && p.control) {
        await attached(p.control, plan, () => exited);
        hostDone = true;
        kill();
      }
    })().catch((err: Error) => {
      hostError = err;
      kill();
    });

  return new Promise<number>((resolve, reject) => {
    let spawnError: NodeJS.ErrnoException | undefined;
    child.on("error", (err: NodeJS.ErrnoException) => {
      spawnError = err;
    });
    child.on("close", async (code, signal) => {
      // A refused resume is its check's one line, whatever QEMU did meanwhile.
      const refused = await resume.checks?.then(
        () => undefined,
        (err: Error) => err,
      );
      if (refused) hostError = refused;
      exited = true;
      probeEnd.abort(); // an attempt under way ends now (an exec: probe's processes killed)
      for (const t of timers) clearTimeout(t);
      process.off("exit", killOnExit);
      req.stop?.removeEventListener("abort", onStop);
      req.kill?.removeEventListener("abort", kill);
      if (spawnError) {
        return reject(
          new RunFailure(
            spawnError.code === "ENOENT" ? p.notFound : `cannot start ${binary}: ${spawnError.message}`,
          ),
        );
      }
      if (hostError)
        return reject(hostError instanceof RunFailure ? hostError : new RunFailure(hostError.message));
      if (hostDone) return resolve(0);
      if (probing && marks.ready === undefined)
        req.stderr.write(
          `slimroot: --probe ${req.ready!.what}: the VM ended before it passed${probeFailure ? ` (last: ${probeFailure})` : ""}\n`,
        );
      const timeout = timedOut ? `timed out after ${secs(req.timeoutMs!)}; ` : "";
      // Killed, after --timeout too: 137, as timeout(1) --kill-after reports its KILL.
      if (killed && watcher.exitCode === undefined) {
        req.stderr.write(
          `slimroot: ${timeout}the app did not stop within ${secs(req.stopGraceMs)}; VM killed\n`,
        );
        return resolve(EXIT_KILLED);
      }
      if (timedOut) {
        req.stderr.write(`slimroot: ${timeout}VM stopped\n`);
        return resolve(EXIT_TIMEOUT);
      }
      if (resumeTimelineDue) printResumeTimeline();
      if (timed && reportedAt !== undefined) {
        const tl = buildTimeline({
          lines: timed,
          initTimes: report.times,
          endMs: reportedAt,
          ...(symbols ? { symbols } : {}),
          ...(marks.ready === undefined ? {} : { readyMs: marks.ready - spawnedAt }),
        });
        for (const l of describeTimeline(tl)) req.stderr.write(`slimroot: ${l}\n`);
        req.onTimeline?.({ ...tl, vmmStartEpochMs: performance.timeOrigin + spawnedAt });
      }
      if (watcher.exitCode !== undefined) return resolve(watcher.exitCode);
      if (stopStatus !== undefined) return resolve(stopStatus);
      const why =
        failureReason(consoleTail, printed, plan) ??
        lastLine(vmmStderr) ??
        lastLine(p.log ? readTail(p.log) : "") ??
        (signal ? `${p.vmmName} killed by ${signal}` : `${p.vmmName} exit status ${code}`);
      reject(new RunFailure(`the VM ended without an exit report from the init: ${why}`));
    });
  });
}

/**
 * The console's lines, each with the host time (ms since `since`) its first byte came: what
 * `--timeline` aligns the guest's clock by (timeline.ts). Lines are split on LF; CRs stay.
 */
function timeConsole(stream: NodeJS.ReadableStream, since: number): ConsoleLine[] {
  const lines: ConsoleLine[] = [];
  let open: ConsoleLine | undefined;
  stream.on("data", (d: Buffer) => {
    const at = performance.now() - since;
    const parts = d.toString("latin1").split("\n");
    for (const [i, part] of parts.entries()) {
      open ??= { hostMs: at, text: "" };
      // Only a line's start is read (its printk stamp, a marker); an app's endless line stays small.
      if (open.text.length < 512) open.text += part.slice(0, 512);
      if (i < parts.length - 1) {
        lines.push(open);
        open = undefined;
      } else if (open.text === "") open = undefined; // a chunk ending in LF opens no line
    }
  });
  return lines;
}

/** The end of a log file, or "" when there is none. */
function readTail(path: string): string {
  try {
    return readFileSync(path, "utf8").slice(-8192);
  } catch {
    return "";
  }
}

function lastLine(text: string): string | undefined {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !/^qemu-system-\w+: terminating on signal/.test(l));
  return lines.pop();
}
