/**
 * `slimroot bench`: for each variant (minimization level x format x kernel) build the image,
 * boot it N times and time it to the first passing probe, bisect the least guest RAM that
 * still passes, and measure the floor (an image whose init ends the VM at once) and the
 * hand-made routes on the same kernel and VMM, all in one run. Builds and boots go through the
 * slimroot CLI itself (and QEMU itself for the hand-made routes), so the numbers are what a
 * user gets. A variant that fails is a row with its error.
 */
import { execFile } from "node:child_process";
import { createReadStream } from "node:fs";
import { mkdir, readFile, rm, stat } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { type Arch, hostArch } from "../arch/arch.js";
import { type Artifact, artifactArch, describe, identify, kernelKindOf } from "../artifact/identify.js";
import { ramFileOf } from "../artifact/snapshot.js";
import { decompressor } from "../compress/compress.js";
import { readKernelConfig } from "../kernel/config.js";
import { cachedKernel } from "../kernel/fetch.js";
import type { KernelManifest } from "../kernel/manifest.js";
import { hasCmdlineDevices } from "../kernel/requirements.js";
import type { Probe } from "../trace/probe.js";
import { requireTools } from "../util/tools.js";
import { defaultMemoryMiB, initrdFootprint, readKernelRule } from "../vm/memory.js";
import { chooseAccel, chooseMachine, hostTscKhz, qemuBinary, qemuCommand } from "../vm/qemu.js";
import { TIMELINE_FILE_ENV, type Timeline } from "../vm/timeline.js";
import { leastMemory, portsFor, type Ready, type Stats, stats, timeReady } from "./boot.js";
import {
  type AppCommand,
  addScriptInit,
  conventionalTools,
  DISK_SIZING,
  packDisk,
  packInitramfs,
  unpackConventionally,
} from "./conventional.js";
import { FORMATS, KERNELS, LEVELS, type Variant, variants } from "./matrix.js";
import { bootPhases } from "./phases.js";
import {
  BENCH_SCHEMA_ID,
  type BenchReport,
  type BenchRow,
  type BootPhases,
  type Comparison,
  type ResumeResult,
} from "./schema.js";

const exec = promisify(execFile);

export interface BenchOptions {
  source: string;
  probes: Probe[];
  levels: string[];
  formats: string[];
  kernels: string[];
  runs: number;
  /** Bisect the least guest RAM. */
  ram: boolean;
  /** Measure the hand-made routes too. */
  conventional: boolean;
  /** One more boot of each slimroot variant with `run --timeline`: where its ready time went. */
  timeline?: boolean;
  /** Snapshot each slimroot variant once ready and time `runs` resumes of it beside its cold boots. */
  resume?: boolean;
  /** Image options given to build and trace as they are (-e, --entrypoint, --add, --platform...). */
  imageArgs: string[];
  /** After --: the app's command. */
  command: string[];
  insecure: boolean;
  /** Guest memory for the timed boots (the default of `run` when absent). */
  memMiB?: number;
  bootTimeoutMs: number;
  /** Scratch directory (bench removes nothing else). */
  work: string;
  /** How to start the slimroot CLI: [node, ...flags, main]. */
  cli: string[];
  progress: (line: string) => void;
  signal: AbortSignal;
}

/** The RAM search starts here and doubles (up to the max) until the app is ready. */
const RAM_START_MIB = 256;
const RAM_MAX_MIB = 4096;
/** Below this no Linux guest boots: the bisection's assumed failure. */
const RAM_FLOOR_MIB = 8;

class Aborted extends Error {}

/** What every stage of one bench run shares. */
interface Run {
  o: BenchOptions;
  /** Says what is next; throws Aborted once the run is interrupted. */
  step: (line: string) => void;
  /** The slimroot CLI with `args`; its stdout. */
  slimroot: (args: string[]) => Promise<string>;
  /** After -- for build and trace: the app's command. */
  cmdArgs: string[];
  insecure: string[];
}

type Measure = (
  label: string,
  argvFor: (mem: number | undefined, ports: Map<number, number>) => string[],
  row: BenchRow,
  /** A slimroot row: what `slimroot snapshot` takes to make its snapshot (the file, --kernel). */
  snapshotArgs?: string[],
) => Promise<void>;

/** Kernel directories (or the error every row on one gets) -> the result. */
type KernelDirs = Map<string, string | Error>;

export async function bench(o: BenchOptions): Promise<BenchReport> {
  const run = startRun(o);
  if (o.conventional) requireTools("bench (the hand-made routes)", conventionalTools(o.source));
  await mkdir(o.work, { recursive: true });
  const kernelDirs = await kernels(run);
  const traceStart = process.hrtime.bigint();
  const profile = await traceProfile(run, kernelDirs);
  const traceSeconds = Number(process.hrtime.bigint() - traceStart) / 1e9;
  const floors = await measureFloors(run, kernelDirs);
  const variantsDone = await measureVariants(run, kernelDirs, profile);
  const rows = [...variantsDone.rows];
  let { app, arch } = variantsDone;
  if (o.conventional) {
    if (!app) ({ app, arch } = (await appForConventional(run)) ?? { app, arch });
    rows.push(...(await conventionalRows(run, kernelDirs, app, arch)));
  }
  for (const row of rows) {
    const floor = floors.get(row.kernel);
    if (row.ready && floor && !(floor instanceof Error)) row.readyToFloor = row.ready.median / floor.median;
  }
  return {
    schema: BENCH_SCHEMA_ID,
    date: new Date().toISOString(),
    host: await hostFacts(arch),
    source: o.source,
    probes: o.probes.map((p) => p.spec),
    runs: o.runs,
    memMiB: o.memMiB ?? null,
    ...(typeof profile === "string" ? { traceSeconds } : {}),
    floors: [...floors].map(([kernel, f]) =>
      f instanceof Error ? { kernel, error: f.message } : { kernel, seconds: f },
    ),
    rows,
    comparisons: compare(rows),
  };
}

function startRun(o: BenchOptions): Run {
  const step = (line: string) => {
    if (o.signal.aborted) throw new Aborted("interrupted");
    o.progress(line);
  };
  const slimroot = async (args: string[]): Promise<string> => {
    const [node, ...rest] = o.cli as [string, ...string[]];
    try {
      const { stdout } = await exec(node, [...rest, ...args], { maxBuffer: 1 << 26, signal: o.signal });
      return stdout;
    } catch (err) {
      if (o.signal.aborted) throw new Aborted("interrupted");
      const e = err as Error & { stderr?: string };
      throw new Error(lastLine(e.stderr) || e.message);
    }
  };
  return {
    o,
    step,
    slimroot,
    cmdArgs: o.command.length ? ["--", ...o.command] : [],
    insecure: o.insecure ? ["--insecure"] : [],
  };
}

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = process.hrtime.bigint();
  const v = await f();
  return [v, Number(process.hrtime.bigint() - t0) / 1e9];
}

/** Each kernel's directory, from its `slimroot kernel` command. */
async function kernels({ o, step, slimroot }: Run): Promise<KernelDirs> {
  const kernelDirs = new Map<string, string | Error>();
  for (const k of o.kernels) {
    step(`kernel ${k}: ${KERNELS[k]!.command.join(" ")}`);
    kernelDirs.set(
      k,
      await slimroot(KERNELS[k]!.command)
        .then((out) => out.trim().split("\n").pop()!.trim())
        .catch((err: Error) => err),
    );
  }

  return kernelDirs;
}

/** A profile for the traced level, recorded once on the first kernel that works. */
async function traceProfile(
  { o, step, slimroot, cmdArgs, insecure }: Run,
  kernelDirs: KernelDirs,
): Promise<string | Error | undefined> {
  let profile: string | Error | undefined;
  if (o.levels.some((l) => LEVELS[l]!.traced)) {
    const kernel = [...kernelDirs.values()].find((d): d is string => typeof d === "string");
    profile = join(o.work, "app.profile");
    step("trace: recording a profile");
    const probeArgs = o.probes.flatMap((p) => ["--probe", p.spec]);
    profile = await slimroot([
      "trace",
      o.source,
      ...probeArgs,
      ...(kernel ? ["--kernel", kernel] : []),
      ...o.imageArgs,
      ...insecure,
      "-o",
      profile,
      ...cmdArgs,
    ])
      .then(() => profile as string)
      .catch((err: Error) => new Error(`trace: ${err.message}`));
  }

  return profile;
}

/** `slimroot run IMAGE`; without a kernel for a kernel file that carries the app. */
function runArgs(
  o: BenchOptions,
  image: string,
  kernel: string | undefined,
  mem: number | undefined,
  ports: Map<number, number>,
): string[] {
  return [
    ...o.cli,
    "run",
    image,
    ...(kernel ? ["--kernel", kernel] : []),
    ...(mem ? ["--mem", String(mem)] : []),
    // bench stops each VM once it has its number: the app need not take long to go.
    "--stop-timeout",
    "2s",
    ...[...ports].flatMap(([guest, host]) => ["-p", `${host}:${guest}`]),
  ];
}

/** `runs` timed boots of `argvFor`'s command; throws the first failure as "WHAT N: error". */
async function timedBoots(
  { o, step }: Run,
  label: string,
  what: string,
  argvFor: (mem: number | undefined, ports: Map<number, number>) => string[],
  standby = false,
): Promise<Stats> {
  const times: number[] = [];
  for (let i = 0; i < o.runs; i++) {
    step(`${label}: ${what} ${i + 1}/${o.runs}`);
    const ports = await portsFor(o.probes);
    const r = await timeReady(argvFor(o.memMiB, ports), o.probes, ports, o.bootTimeoutMs, {}, standby);
    if ("error" in r) throw new Error(`${what} ${i + 1}: ${r.error}`);
    times.push(r.seconds);
  }
  return stats(times)!;
}

/**
 * bench --resume: `slimroot snapshot` of the row's file (the first probe says when it is
 * ready), then `runs` resumes timed as the cold boots were. A failure is the result's error,
 * not the row's: the cold numbers stand.
 */
async function measureResume(
  run: Run,
  label: string,
  row: BenchRow,
  snapshotArgs: string[],
): Promise<ResumeResult> {
  const { o, step, slimroot } = run;
  const snap = join(o.work, "resume.snap");
  const result: ResumeResult = { bytes: null, ready: null, toCold: null, standby: null, standbyToCold: null };
  try {
    step(`${label}: snapshot`);
    await Promise.all([snap, ramFileOf(snap)].map((f) => rm(f, { force: true })));
    await slimroot([
      "snapshot",
      ...snapshotArgs,
      ...(o.memMiB ? ["--mem", String(o.memMiB)] : []),
      "--probe",
      o.probes[0]!.spec,
      "--ready-timeout",
      `${Math.ceil(o.bootTimeoutMs / 1000)}s`,
      "-o",
      snap,
    ]);
    // What the snapshot takes on disk: the state file and the RAM file's allocated blocks.
    const ram = await stat(ramFileOf(snap));
    result.bytes = (await stat(snap)).size + ram.blocks * 512;
    // The snapshot fixed the memory: a resume takes none.
    result.ready = await timedBoots(run, label, "resume", (_mem, ports) =>
      runArgs(o, snap, undefined, undefined, ports),
    );
    if (row.ready) result.toCold = result.ready.median / row.ready.median;
    // As a pool keeps them: started, checked and loaded beforehand; timed from the signal.
    result.standby = await timedBoots(
      run,
      label,
      "resume from standby",
      (_mem, ports) => [...runArgs(o, snap, undefined, undefined, ports), "--standby"],
      true,
    );
    if (row.ready) result.standbyToCold = result.standby.median / row.ready.median;
  } catch (err) {
    if (err instanceof Aborted) throw err;
    result.error = (err as Error).message;
  } finally {
    await Promise.all([snap, ramFileOf(snap)].map((f) => rm(f, { force: true })));
  }
  return result;
}

/** N timed boots and (optionally) the RAM bisection, for any way of starting the VM. */
function measurer(run: Run): Measure {
  const { o, step } = run;
  return async (label, argvFor, row, snapshotArgs) => {
    row.ready = await timedBoots(run, label, "boot", argvFor);
    if (o.resume && snapshotArgs && o.probes.length)
      row.resume = await measureResume(run, label, row, snapshotArgs);
    if (o.ram) {
      // A step that does not pass within a few times the measured ready time does not pass.
      const stepTimeout = Math.max(20_000, Math.round(row.ready!.max * 4000));
      row.leastMiB =
        (await leastMemory(
          async (mib) => {
            step(`${label}: RAM ${mib} MiB`);
            const ports = await portsFor(o.probes);
            const r: Ready = await timeReady(argvFor(mib, ports), o.probes, ports, stepTimeout);
            return "seconds" in r;
          },
          { floorMiB: RAM_FLOOR_MIB, startMiB: o.memMiB ?? RAM_START_MIB, maxMiB: RAM_MAX_MIB },
        )) ?? null;
    }
    // A boot of its own, last (a failure loses only it): a timed boot prints every kernel
    // message, which slows it.
    if (o.timeline && row.kind === "slimroot") row.timeline = await timelineBoot(run, label, argvFor);
  };
}

/** One boot with `run --timeline`, its timeline cut into phases up to the first passing probe. */
async function timelineBoot(
  { o, step }: Run,
  label: string,
  argvFor: Parameters<Measure>[1],
): Promise<BootPhases> {
  step(`${label}: boot with --timeline`);
  const file = join(o.work, "timeline.json");
  await rm(file, { force: true });
  const ports = await portsFor(o.probes);
  const startEpochMs = performance.timeOrigin + performance.now();
  const r = await timeReady([...argvFor(o.memMiB, ports), "--timeline"], o.probes, ports, o.bootTimeoutMs, {
    [TIMELINE_FILE_ENV]: file,
  });
  if ("error" in r) throw new Error(`boot with --timeline: ${r.error}`);
  const tl = JSON.parse(
    await readFile(file, "utf8").catch(() => {
      throw new Error("boot with --timeline: slimroot run wrote no timeline (no exit report?)");
    }),
  ) as Timeline;
  return bootPhases(tl, startEpochMs, startEpochMs + r.seconds * 1000);
}

/** Floors: our init alone, whose app is missing: it reports and ends the VM at once. */
async function measureFloors(
  { o, step, slimroot }: Run,
  kernelDirs: KernelDirs,
): Promise<Map<string, Stats | Error>> {
  const floors = new Map<string, Stats | Error>();
  const empty = join(o.work, "empty");
  await mkdir(empty, { recursive: true });
  const floorImage = join(o.work, "floor.cpio");
  const platform = platformArg(o.imageArgs);
  const floorBuilt = await slimroot([
    "build",
    `dir:${empty}`,
    ...platform,
    "--entrypoint",
    "/missing",
    "--compress",
    "none",
    "-o",
    floorImage,
  ]).catch((err: Error) => err);
  for (const [k, dir] of kernelDirs) {
    if (typeof dir !== "string") {
      floors.set(k, dir);
      continue;
    }
    if (floorBuilt instanceof Error) {
      floors.set(k, floorBuilt);
      continue;
    }
    const times: number[] = [];
    let failed: Error | undefined;
    for (let i = 0; i < o.runs && !failed; i++) {
      step(`floor/${k}: boot ${i + 1}/${o.runs}`);
      const r = await timeReady(
        runArgs(o, floorImage, dir, o.memMiB, new Map()),
        [],
        new Map(),
        o.bootTimeoutMs,
      );
      if ("error" in r) failed = new Error(r.error);
      else times.push(r.seconds);
    }
    floors.set(k, failed ?? stats(times)!);
  }

  return floors;
}

/** Every slimroot variant: built, booted, timed; the app's command and arch from the first initramfs. */
async function measureVariants(
  run: Run,
  kernelDirs: KernelDirs,
  profile: string | Error | undefined,
): Promise<{ rows: BenchRow[]; app?: AppCommand; arch: Arch }> {
  const { o, step, slimroot, cmdArgs, insecure } = run;
  const measure = measurer(run);
  const rows: BenchRow[] = [];
  let app: AppCommand | undefined;
  let arch: Arch = hostArch() ?? "amd64";
  const all = variants(o.levels, o.formats, o.kernels);
  for (const [i, v] of all.entries()) {
    const row = emptyRow(v.id, "slimroot", v);
    rows.push(row);
    try {
      const kernel = kernelDirs.get(v.kernel)!;
      if (typeof kernel !== "string") throw kernel;
      const level = LEVELS[v.level]!;
      const format = FORMATS[v.format]!;
      const image = join(o.work, `${v.level}-${v.format}-${v.kernel}${format.suffix}`);
      step(`[${i + 1}/${all.length}] ${v.id}: build`);
      if (level.traced && profile instanceof Error) throw profile;
      const profileArgs = level.traced ? ["--profile", profile as string, "--no-verify"] : [];
      const [, buildSeconds] = await timed(() =>
        slimroot([
          "build",
          o.source,
          "--minimize",
          level.minimize,
          ...profileArgs,
          ...format.build,
          ...o.imageArgs,
          ...insecure,
          "-o",
          image,
          ...cmdArgs,
        ]),
      );
      row.buildSeconds = buildSeconds;
      const built = await identify(image, { embedded: false });
      if (!app && built.kind === "initramfs") ({ app, arch } = appOf(built));
      let booted = image;
      if (format.embed) {
        // One file: the kernel with the image built in (its build counts as build time).
        if (v.kernel === "debian")
          throw new Error("embedding needs a kernel slimroot builds (--kernels slimroot)");
        booted = `${image}.vmlinuz`;
        const [, embedSeconds] = await timed(() =>
          slimroot(["kernel", "build", "--embed", image, "-o", booted]),
        );
        row.buildSeconds += embedSeconds;
      }
      row.bytes = { file: (await stat(booted)).size, raw: await rawBytes(built) };
      await measure(
        `[${i + 1}/${all.length}] ${v.id}`,
        (mem, ports) => runArgs(o, booted, format.embed ? undefined : kernel, mem, ports),
        row,
        [booted, ...(format.embed ? [] : ["--kernel", kernel])],
      );
    } catch (err) {
      if (err instanceof Aborted) throw err;
      row.error = (err as Error).message;
    }
  }

  return { rows, ...(app ? { app } : {}), arch };
}

/** Only disk variants ran (or none built): the hand-made routes need the app's command. */
async function appForConventional({
  o,
  step,
  slimroot,
  cmdArgs,
  insecure,
}: Run): Promise<{ app: AppCommand; arch: Arch } | undefined> {
  step("the app's command for the hand-made routes");
  const plain = join(o.work, "app.cpio");
  return slimroot([
    "build",
    o.source,
    ...o.imageArgs,
    ...insecure,
    "--compress",
    "none",
    "-o",
    plain,
    ...cmdArgs,
  ])
    .then(async () => appOf(await identify(plain)))
    .catch(() => undefined);
}

/** The hand-made routes (initramfs, ext4) on every kernel. */
async function conventionalRows(
  run: Run,
  kernelDirs: KernelDirs,
  app: AppCommand | undefined,
  arch: Arch,
): Promise<BenchRow[]> {
  const { o, step } = run;
  const measure = measurer(run);
  const rows: BenchRow[] = [];
  for (const k of o.kernels) {
    for (const route of ["initramfs", "ext4"] as const) {
      const row = emptyRow(`hand-made ${route}/${k}`, "conventional", {
        level: "none",
        format: route,
        kernel: k,
      });
      rows.push(row);
      try {
        const kernel = kernelDirs.get(k)!;
        if (typeof kernel !== "string") throw kernel;
        if (!app) throw new Error("no slimroot variant was built, so the app's command is unknown");
        await conventionalRow(row, route, kernel, app, arch, o, step, measure);
      } catch (err) {
        if (err instanceof Aborted) throw err;
        row.error = (err as Error).message;
      }
    }
  }
  return rows;
}

function emptyRow(id: string, kind: BenchRow["kind"], v: Omit<Variant, "id">): BenchRow {
  return {
    id,
    kind,
    level: v.level,
    format: v.format,
    kernel: v.kernel,
    bytes: null,
    buildSeconds: null,
    ready: null,
    readyToFloor: null,
    leastMiB: null,
  };
}

/** The --platform of the image options, for the floor image (same architecture). */
function platformArg(imageArgs: string[]): string[] {
  const i = imageArgs.indexOf("--platform");
  return i >= 0 && imageArgs[i + 1] ? ["--platform", imageArgs[i + 1]!] : [];
}

/** An image's bytes uncompressed (a disk's as they are). */
async function rawBytes(image: Artifact): Promise<number> {
  if (image.kind !== "initramfs" || image.compression === "none") return image.bytes;
  let n = 0;
  await pipeline(createReadStream(image.path), decompressor(image.compression, image.path), async (src) => {
    for await (const chunk of src) n += (chunk as Buffer).length;
  });
  return n;
}

/** The app's command and the architecture, read back from an image slimroot built. */
function appOf(image: Artifact): { app: AppCommand; arch: Arch } {
  const app = image.kind === "kernel" || image.kind === "snapshot" ? undefined : image.app;
  if (!app) throw new Error(`${image.path}: no app config in the image`);
  return { app: { args: app.args, env: app.env, workdir: app.workdir }, arch: artifactArch(image) };
}

async function conventionalRow(
  row: BenchRow,
  route: "initramfs" | "ext4",
  kernelDir: string,
  app: AppCommand,
  arch: Arch,
  o: BenchOptions,
  step: (line: string) => void,
  measure: Measure,
): Promise<void> {
  const manifest = await cachedKernel(kernelDir);
  if (!manifest) throw new Error(`${kernelDir}: no manifest.json (not a kernel directory from slimroot)`);
  if (route === "ext4" && manifest.modules.some((m) => m.name === "virtio_blk")) {
    throw new Error(
      "this kernel has virtio_blk as a module: a hand-made ext4 root needs a kernel with it built in (--kernels slimroot)",
    );
  }
  const accel = chooseAccel(arch);
  const tscKhz = arch === "amd64" && accel === "tcg" ? hostTscKhz() : undefined;
  const machine = chooseMachine(arch, accel, tscKhz);
  const scratch = join(o.work, `hand-made-${route}-${row.kernel}`);
  const tree = join(scratch, "rootfs");
  await mkdir(scratch, { recursive: true });
  const image = join(scratch, route === "ext4" ? "rootfs.ext4" : "initramfs.cpio.gz");
  step(`${row.id}: unpack, script init, pack`);
  const t0 = process.hrtime.bigint();
  await unpackConventionally(o.source, tree, scratch, o.insecure);
  await addScriptInit(tree, app, {
    arch,
    kernelDir,
    transport: machine === "pc" ? "pci" : "mmio",
    busybox: "/bin/busybox",
  });
  if (route === "ext4") {
    const mib = await packDisk(tree, image);
    row.sizing = `ext4 of ${mib} MiB, sized to the tree (${DISK_SIZING})`;
  } else await packInitramfs(tree, image);
  row.buildSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const size = (await stat(image)).size;
  row.bytes = { file: size, raw: await rawBytes(await identify(image, { embedded: false })) };
  const kernel = join(kernelDir, manifest.kernel);
  // The memory a user gives it: what `slimroot run` would give the same files on this kernel
  // (the hand-made tree lives in RAM as slimroot's initramfs does); a disk root, run's default.
  const memMiB =
    route === "initramfs" ? await handmadeMemoryMiB(image, kernelDir, manifest, arch) : RAM_START_MIB;
  if (route === "initramfs")
    row.sizing =
      o.memMiB !== undefined
        ? `booted with --mem ${o.memMiB} MiB`
        : `booted with ${memMiB} MiB: slimroot run's memory rule for these files on this kernel`;
  // As slimroot's own boots do: a kernel that takes its devices from the command line runs
  // microvm without ACPI.
  const config = manifest.config ? await readKernelConfig(join(kernelDir, manifest.config)) : undefined;
  const acpi = !(config && hasCmdlineDevices(config));
  const qmp = join(scratch, "qmp.sock");
  const argvFor = (mem: number | undefined, ports: Map<number, number>) => {
    const argv = qemuCommand({
      arch,
      machine,
      accel,
      kernel,
      initrd: image,
      acpi,
      memMiB: mem ?? memMiB,
      cpus: 1,
      forwards: [...ports].map(([guestPort, hostPort]) => ({
        proto: "tcp" as const,
        hostAddr: "127.0.0.1",
        hostPort,
        guestPort,
      })),
      qmpSocket: qmp,
      ...(tscKhz ? { tscKhz } : {}),
    });
    if (route === "initramfs") return argv;
    // The disk route: no initrd, the disk as virtio-blk, and the kernel told where root is.
    const i = argv.indexOf("-initrd");
    argv.splice(i, 2);
    const a = argv.indexOf("-append");
    argv[a + 1] = `${argv[a + 1]} root=/dev/vda rw init=/init`;
    const dev = machine === "pc" ? "virtio-blk-pci" : "virtio-blk-device";
    argv.push(
      "-drive",
      `file=${image},format=raw,if=none,id=root,snapshot=on`,
      "-device",
      `${dev},drive=root`,
    );
    return argv;
  };
  await measure(row.id, argvFor, row);
}

/** The guest memory `slimroot run` would size for the initramfs `image` on this kernel (memory.ts). */
async function handmadeMemoryMiB(
  image: string,
  kernelDir: string,
  manifest: KernelManifest,
  arch: Arch,
): Promise<number> {
  const kernel = join(kernelDir, manifest.kernel);
  // What the file is, asked of artifact/ as run asks it.
  const a = await identify(kernel, { embedded: false });
  if (a.kind !== "kernel") throw new Error(`${kernel}: not a kernel image but ${describe(a)}`);
  const rule = await readKernelRule(kernel, kernelKindOf(a), {
    manifest,
    ...(manifest.config ? { configFile: join(kernelDir, manifest.config) } : {}),
  });
  return defaultMemoryMiB(await initrdFootprint([image], image), arch, rule);
}

/** Best slimroot row against each hand-made route on the same kernel, with the goals. */
function compare(rows: BenchRow[]): Comparison[] {
  const out: Comparison[] = [];
  const goals = [
    { metric: "bytes", goal: 1 / 15, value: (r: BenchRow) => r.bytes?.file },
    { metric: "ready", goal: 0.75, value: (r: BenchRow) => r.ready?.median },
    { metric: "ram", goal: 0.5, value: (r: BenchRow) => r.leastMiB ?? undefined },
    { metric: "build", goal: 0.5, value: (r: BenchRow) => r.buildSeconds ?? undefined },
  ] as const;
  for (const base of rows.filter((r) => r.kind === "conventional" && !r.error)) {
    const ours = rows.filter((r) => r.kind === "slimroot" && !r.error && r.kernel === base.kernel);
    for (const g of goals) {
      const b = g.value(base);
      const candidates = ours.filter((r) => g.value(r) !== undefined);
      if (b === undefined || candidates.length === 0) continue;
      const best = candidates.reduce((x, y) => (g.value(y)! < g.value(x)! ? y : x));
      const ratio = g.value(best)! / b;
      out.push({
        metric: g.metric,
        row: best.id,
        against: base.id,
        value: g.value(best)!,
        baseline: b,
        ratio,
        goal: g.goal,
        met: ratio <= g.goal,
      });
    }
  }
  return out;
}

async function hostFacts(arch: Arch): Promise<BenchReport["host"]> {
  const cpuinfo = await readFile("/proc/cpuinfo", "utf8").catch(() => "");
  const osRelease = await readFile("/etc/os-release", "utf8").catch(() => "");
  const qemu = await exec(qemuBinary(arch), ["--version"])
    .then((r) => r.stdout.split("\n")[0]!)
    .catch(() => "unknown");
  return {
    cpus: cpus().length,
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown",
    memGiB: Math.round(totalmem() / 2 ** 30),
    os: /^PRETTY_NAME="?([^"\n]*)/m.exec(osRelease)?.[1] ?? "unknown",
    node: process.version,
    qemu,
    accel: chooseAccel(arch),
  };
}

function lastLine(text: string | undefined): string {
  return (
    (text ?? "")
      .trim()
      .split("\n")
      .pop()
      ?.replace(/^slimroot: /, "") ?? ""
  );
}
