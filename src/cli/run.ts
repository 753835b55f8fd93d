import { constants } from "node:os";
import { Readable } from "node:stream";
import { type Command, CommanderError } from "commander";
import { hostPlatform, parsePlatform } from "../image/platform.js";
import { writeFileAtomically } from "../output/atomic.js";
import type { pullToTemp } from "../publish/pull.js";
import {
  type PortMap,
  type Probe,
  parseProbe,
  portMap,
  probeForwards,
  TIMED_PROBE,
  waitForProbes,
} from "../trace/probe.js";
import { oneLine, UserError } from "../util/errors.js";
import { parseVolume } from "../vm/disks.js";
import { interfaceNameProblem } from "../vm/firecracker.js";
import { VMMS, type Vmm } from "../vm/plan.js";
import { parsePortForward } from "../vm/ports.js";
import { GuestReport, reportKeyFromEnv } from "../vm/report.js";
import { EXIT_FAILED, type RunRequest, runImage } from "../vm/run.js";
import { STANDBY_SIGNAL } from "../vm/standby.js";
import { TIMELINE_FILE_ENV, type Timeline } from "../vm/timeline.js";
import { collect, parseDuration, positiveInt } from "./parse.js";

/** `-e NAME=VALUE`, or `-e NAME` for the value NAME has here (skipped when unset). */
function envEntries(specs: string[]): string[] {
  const out: string[] = [];
  for (const s of specs) {
    if (s.startsWith("=") || s === "") throw new UserError(`-e ${s}: expected NAME=VALUE`);
    if (s.includes("=")) out.push(s);
    else if (process.env[s] !== undefined) out.push(`${s}=${process.env[s]}`);
  }
  return out;
}

function parseVmm(text: string): Vmm {
  if (!(VMMS as readonly string[]).includes(text))
    throw new UserError(`--vmm ${text}: expected ${VMMS.join(" or ")}`);
  return text as Vmm;
}

/** A host interface name, as the kernel takes them (and not one that reads as an option). */
function tapName(text: string): string {
  const problem = interfaceNameProblem(text);
  if (problem) throw new UserError(`--tap ${text}: ${problem}`);
  return text;
}

/** A.B.C.D, with /N when `prefix`. */
function ipv4(text: string, flag: string, prefix: boolean): string {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\/(\d{1,2}))?$/.exec(text);
  const octets = m?.slice(1, 5) ?? [];
  const len = m?.[5];
  const ok =
    octets.length === 4 &&
    octets.every((o) => Number(o) <= 255) &&
    (prefix ? len !== undefined && Number(len) <= 32 : len === undefined);
  if (!ok) throw new UserError(`${flag} ${text}: expected ${prefix ? "A.B.C.D/N" : "A.B.C.D"}`);
  return text;
}

/** Guest CIDs 0-2 are reserved (hypervisor, local, host). */
function vsockCid(text: string): number {
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= 3 && n <= 0xffffffff))
    throw new UserError(`--vsock ${text}: expected a guest CID from 3 to 4294967295`);
  return n;
}

const STOP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/**
 * While `fn` runs, SIGINT, SIGTERM and SIGHUP stop the app gracefully instead of ending the
 * process (the CLI's own handlers are set aside and put back after): the first aborts `stop`
 * with 128+N as the status to report if the VM ends without an exit report, a second one
 * aborts `kill`.
 */
export async function withStopSignals<T>(
  fn: (stop: AbortSignal, kill: AbortSignal) => Promise<T>,
): Promise<T> {
  const stop = new AbortController();
  const kill = new AbortController();
  const saved = STOP_SIGNALS.map((s) => [s, process.listeners(s)] as const);
  const onSignal = (s: NodeJS.Signals) => {
    if (stop.signal.aborted) kill.abort();
    else stop.abort(128 + constants.signals[s]);
  };
  for (const [s] of saved) {
    process.removeAllListeners(s);
    process.on(s, onSignal);
  }
  try {
    return await fn(stop.signal, kill.signal);
  } finally {
    for (const [s, listeners] of saved) {
      process.off(s, onSignal);
      for (const l of listeners) process.on(s, l as NodeJS.SignalsListener);
    }
  }
}

/** Resolves on the first `signal`; later ones are ignored until dispose (no default action meanwhile). */
function firstSignal(signal: NodeJS.Signals): { received: Promise<void>; dispose: () => void } {
  let resolve!: () => void;
  const received = new Promise<void>((r) => {
    resolve = r;
  });
  const on = () => resolve();
  process.on(signal, on);
  return { received, dispose: () => process.off(signal, on) };
}

/** The options run and snapshot share: kernel, modules, port forwards, memory, CPUs. */
export function machineOptions(opts: Record<string, unknown>) {
  return {
    ...(opts.kernel ? { kernel: opts.kernel as string } : {}),
    ...(opts.modules ? { modules: opts.modules as string } : {}),
    forwards: ((opts.publish as string[] | undefined) ?? []).map(parsePortForward),
    ...(opts.mem ? { memMiB: positiveInt(opts.mem as string, "--mem", 1 << 20) } : {}),
    cpus: positiveInt(opts.cpus as string, "--cpus", 64),
  };
}

/** `--probe`: tried as bench times them, in order, until all pass or the VM ends. */
function readyProbes(probes: readonly Probe[], ports: PortMap): NonNullable<RunRequest["ready"]> {
  return {
    what: probes.map((p) => p.spec).join(", "),
    wait: (gone, signal, onFailure) =>
      waitForProbes(probes, ports, Number.POSITIVE_INFINITY, gone, { ...TIMED_PROBE, signal, onFailure }),
  };
}

export function registerRun(program: Command): void {
  program
    .command("run")
    .description(
      "boot an image built by slimroot build in a QEMU or Firecracker microVM; the console goes to stdout, and the exit status is the app's (125: slimroot or the VM failed, 124: --timeout)",
    )
    .argument(
      "<image>",
      "an initramfs or a disk image (ext4, erofs, squashfs) from slimroot build, or docker://HOST/REPO:TAG pushed by slimroot push",
    )
    .argument("[command...]", "after --: replaces the image's whole command (Entrypoint and Cmd)")
    .option(
      "--kernel <path>",
      "a kernel directory from kernel fetch, or a kernel image file (default: the fetched kernel for the image's architecture)",
    )
    .option("--modules <dir>", "load every .ko under this directory in the VM (with --kernel FILE)")
    .option(
      "-p, --publish <[ip:]host:guest[/udp]>",
      "forward a host port to the VM (repeatable; host side 127.0.0.1)",
      collect,
    )
    .option("-e, --env <K=V>", "set an environment variable for the app (repeatable)", collect)
    .option("--mem <MiB>", "guest memory (default: sized from the image, which lives in RAM; at least 256)")
    .option("--cpus <n>", "virtual CPUs", "1")
    .option("--timeout <duration>", "stop the VM after this long and exit 124 (e.g. 30s, 5m)")
    .option(
      "--stop-timeout <duration>",
      "how long the app gets to exit after SIGTERM/SIGINT or --timeout",
      "10s",
    )
    .option(
      "--volume <FILE:/path[:ro]>",
      "attach an ext4, erofs or squashfs image as a virtio disk mounted at /path (repeatable)",
      collect,
    )
    .option(
      "--read-only",
      "an ext4 root: mount it read-only under a tmpfs overlay (the file is never written)",
    )
    .option("--vmm <vmm>", "qemu or firecracker", "qemu")
    .option("--tap <name>", "firecracker: attach eth0 to this host tap device")
    .option("--guest-ip <a.b.c.d/n>", "firecracker: eth0's address (default 172.16.N.2/30 for tapN)")
    .option("--gateway <a.b.c.d>", "firecracker: the guest's default route (default 172.16.N.1 for tapN)")
    .option("--vsock <cid>", "firecracker: add a vsock device with this guest CID (3 or more)")
    .option(
      "--timeline",
      "after the run, print on stderr where the boot's time went (VMM, kernel, initcalls, init, app); boots with every kernel message on the console. With APP.snap: where the resume's time went, once the app continues",
    )
    .option(
      "--probe <probe>",
      "say on stderr when the app is ready, and how long it took: http:PORT[/PATH], tcp:PORT[:SEND[:EXPECT]] or exec:COMMAND, tried every 20 ms from the VMM's start (a resume's: once the app continues); PORT is the guest's, forwarded to a free loopback port unless -p forwards it there; repeatable: all pass, in order; with --timeline, a mark on it",
      collect,
    )
    .option(
      "--dry-run",
      "write the VM's files, print the VMM command line (and the boot plan on stderr) and exit",
    )
    .option("--platform <os/arch>", "with docker://: the platform to pull (default: this machine's)")
    .option("--insecure", "with docker://: allow plain http for the registry")
    .option("--json", "with --dry-run: print the boot plan as JSON (with the command) instead")
    .option(
      "--standby",
      `with APP.snap: check the snapshot, load it and wait, paused, until ${STANDBY_SIGNAL}, then resume it (a warm VM of a pool); a stop signal meanwhile ends it at once`,
    )
    // docker run's rule: every error of slimroot's own, a bad option or argument too, is 125,
    // so that any other status is the app's (see EXIT_FAILED).
    .exitOverride((err) => {
      throw err.exitCode === 0 ? err : new CommanderError(EXIT_FAILED, err.code, err.message);
    })
    .option(
      "-o, --output <dir>",
      "with --dry-run: the directory for the VM's files (vm.json, vmlinux, initrd)",
    )
    .action(async (ref: string, command: string[], opts: Record<string, unknown>) => {
      let pulled: Awaited<ReturnType<typeof pullToTemp>> | undefined;
      try {
        // A registry reference is pulled to a private temp file, which runs as a path would.
        // The registry client (HTTP, TLS, its schemas) is loaded only then (13 ms of every start, profiled).
        if (ref.startsWith("docker://"))
          pulled = await (await import("../publish/pull.js")).pullToTemp(ref, {
            insecure: Boolean(opts.insecure),
            // The kernel the image names boots it, unless --kernel says another.
            withKernel: !opts.kernel,
            platform: opts.platform ? parsePlatform(opts.platform as string) : hostPlatform(),
          });
        else if (opts.platform || opts.insecure)
          throw new UserError(`${opts.platform ? "--platform" : "--insecure"}: only with a docker:// image`);
        const image = pulled?.path ?? ref;
        const env = envEntries((opts.env as string[] | undefined) ?? []);
        // A program driving us (bench) may bring the report key, to read the report from our output.
        const reportKey = reportKeyFromEnv();
        // ...and a file for the timeline (bench's timeline columns).
        const timelineFile = opts.timeline ? process.env[TIMELINE_FILE_ENV] : undefined;
        let timeline: Timeline | undefined;
        const standby = opts.standby ? firstSignal(STANDBY_SIGNAL) : undefined;
        const machine = machineOptions(opts);
        const probes = ((opts.probe as string[] | undefined) ?? []).map(parseProbe);
        if (probes.length && opts.vmm === "firecracker")
          throw new UserError(
            "--probe: not with --vmm firecracker (it forwards no ports: probe the guest's address on its tap yourself)",
          );
        const forwards =
          probes.length && !opts.dryRun ? await probeForwards(probes, machine.forwards) : machine.forwards;
        const code = await withStopSignals((stop, kill) =>
          runImage({
            image,
            ...machine,
            forwards,
            ...(probes.length ? { ready: readyProbes(probes, portMap(forwards)) } : {}),
            ...(!opts.kernel && pulled?.kernel ? { kernel: pulled.kernel } : {}),
            env,
            ...(command.length ? { args: command } : {}),
            ...(opts.timeout ? { timeoutMs: parseDuration(opts.timeout as string, "--timeout") } : {}),
            stopGraceMs: parseDuration(opts.stopTimeout as string, "--stop-timeout"),
            ...(opts.timeline ? { timeline: true } : {}),
            ...(timelineFile ? { onTimeline: (tl: Timeline) => (timeline = tl) } : {}),
            dryRun: Boolean(opts.dryRun),
            ...(opts.json ? { json: true } : {}),
            volumes: ((opts.volume as string[] | undefined) ?? []).map(parseVolume),
            readOnly: Boolean(opts.readOnly),
            readOnlyFlag: Boolean(opts.readOnly),
            ...(opts.output ? { outDir: opts.output as string } : {}),
            vmm: parseVmm(opts.vmm as string),
            ...(opts.tap ? { tap: tapName(opts.tap as string) } : {}),
            ...(opts.guestIp ? { guestIp: ipv4(opts.guestIp as string, "--guest-ip", true) } : {}),
            ...(opts.gateway ? { gateway: ipv4(opts.gateway as string, "--gateway", false) } : {}),
            ...(opts.vsock ? { vsockCid: vsockCid(opts.vsock as string) } : {}),
            stdout: process.stdout,
            stderr: process.stderr,
            ...(reportKey ? { report: new GuestReport(reportKey) } : {}),
            stop,
            kill,
            ...(standby ? { standby: standby.received } : {}),
          }),
        ).finally(() => standby?.dispose());
        if (timelineFile && timeline)
          await writeFileAtomically(timelineFile, Readable.from([`${JSON.stringify(timeline)}\n`]));
        process.exitCode = code;
      } catch (err) {
        // Like docker run: whatever kept the app from running is 125, so the app's own
        // statuses stay unambiguous.
        process.stderr.write(`slimroot: ${oneLine(err)}\n`);
        if (process.env.SLIMROOT_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
        process.exitCode = EXIT_FAILED;
      } finally {
        await pulled?.remove();
      }
    });
}
