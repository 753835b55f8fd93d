/**
 * One plan per boot: what `slimroot run` will start, decided in one pure function from what
 * was read of the image, the volumes, the kernel and the host (`BootFacts`, facts.ts reads
 * them) and the user's options. Every combination `run` refuses is refused here, once; the
 * launchers (qemu-launcher.ts, firecracker-launcher.ts) only render a plan into argv or
 * vm.json and write its files. `run --dry-run` prints it.
 */
import type { Arch } from "../arch/arch.js";
import type { KernelKind } from "../artifact/kernel.js";
import { pad4 } from "../cpio/newc.js";
import type { DiskIdentity } from "../disk/identity.js";
import type { KernelConfig } from "../kernel/config.js";
import type { Transport } from "../kernel/manifest.js";
import { hasCmdlineDevices } from "../kernel/requirements.js";
import { GUEST_MODULES_DIR } from "../kmod/modules-cpio.js";
import { shellQuote } from "../util/shell.js";
import { CONTROL_MODULE, CONTROL_PORT_NAME } from "./control.js";
import { type Disk, type DiskPlan, kernelDiskProblem, planDisks, type VolumeFacts } from "./disks.js";
import { RunFailure } from "./failure.js";
import { checkFirecrackerKernel, defaultTapNetwork, firecrackerBootArgs } from "./firecracker.js";
import {
  chooseMemoryMiB,
  defaultMemoryMiB,
  type Footprint,
  type KernelRule,
  memoryRefusedBelowMiB,
  memoryWarning,
  unknownKernelRule,
} from "./memory.js";
import type { PortForward } from "./ports.js";
import { type Accel, kernelCmdline, type Machine } from "./qemu.js";
import { type GuestNetwork, runConfCpioSize, runConfText } from "./runconf.js";
import { timelineCmdline } from "./timeline.js";

export type Vmm = "qemu" | "firecracker";
export const VMMS: readonly Vmm[] = ["qemu", "firecracker"];

/** What unpacking an archive puts in the guest's RAM (memory.ts). */
export type Files = Omit<Footprint, "initrdBytes">;

/** What `run` read of its image argument. */
export type ImageFacts =
  /** A slimroot initramfs: its /init's architecture, whether it is lz4 (it then goes last). */
  | { kind: "initramfs"; path: string; arch: Arch; bytes: number; lz4: boolean; files: Files }
  /** A disk image (ext4, erofs, squashfs); `initBytes`: the archive of our init alone that boots it. */
  | { kind: "disk"; path: string; identity: DiskIdentity; initBytes: number }
  /** A kernel with its app built in (kernel build --embed): the built-in image's files. */
  | { kind: "embedded"; path: string; kernel: KernelKind; bytes: number; files: Files; rule: KernelRule };

/** The kernel `--kernel` (or the fetched default) resolved to, for a non-embedded boot. */
export interface KernelFacts {
  path: string;
  kind: KernelKind;
  /** For messages: where it came from. */
  label: string;
  /** Its build config, when known (read and parsed once, by facts.ts). */
  config?: KernelConfig;
  /** An arm64 Image.gz (Firecracker boots it inflated). */
  gzip: boolean;
  /** The modules archive appended to the initrd. */
  modules?: { path: string; bytes: number; files: Files };
  /** What it keeps of the guest's RAM for itself (memory.ts: measured, or an estimate). */
  rule: KernelRule;
}

/** QEMU's host-side choices (qemu.ts): accelerator, machine, the TSC rate for microvm. */
export interface HostFacts {
  accel: Accel;
  machine: Machine;
  tscKhz?: number;
}

export interface BootFacts {
  /** The guest's architecture: the image's /init, the embedded kernel's, or for a disk the kernel's (else the host's). */
  arch: Arch;
  image: ImageFacts;
  volumes: readonly VolumeFacts[];
  /** Absent for an embedded kernel (it is the image). */
  kernel?: KernelFacts;
  /** QEMU only. */
  host?: HostFacts;
}

/** What the user asked for: the part of a run request the plan reads. */
export interface BootOptions {
  vmm: Vmm;
  /** `--kernel`, `--modules` as given (an embedded kernel takes neither). */
  kernel?: string;
  modules?: string;
  forwards: readonly PortForward[];
  /** Guest memory; default: sized from the image (memory.ts). Too little for the image is an error. */
  memMiB?: number;
  cpus: number;
  /** NAME=VALUE for run.conf. */
  env: readonly string[];
  /** Replaces the image's whole argv (run.conf `arg` lines replace app.conf's). */
  args?: readonly string[];
  /** Record mode (slimroot trace): the init prints SLIMROOT_TRACE lines before its exit report. */
  trace?: boolean;
  /** Never write the image: an ext4 root is mounted read-only under a tmpfs overlay. */
  readOnly?: boolean;
  /** The user's `--read-only`: refused where it would change nothing (any root but ext4). */
  readOnlyFlag?: boolean;
  /** Firecracker: the host tap device for eth0, eth0's address (A.B.C.D/N) and gateway. */
  tap?: string;
  guestIp?: string;
  gateway?: string;
  /** Firecracker: a vsock device with this guest CID. */
  vsockCid?: number;
  /** This boot's report key (report.ts), for the init in the run.conf archive. */
  reportKey?: string;
  /** `run --timeline`: boot with the kernel's timestamps and initcall times on the console (timeline.ts). */
  timeline?: boolean;
  /** slimroot snapshot: the VM gets the control channel (control.ts) its init is frozen and resumed through. */
  control?: boolean;
  /** slimroot snapshot (QEMU): the guest's RAM is this file, mapped shared (the snapshot's RAM file). */
  ramFile?: string;
  stopGraceMs: number;
  timeoutMs?: number;
}

/** One archive of the initrd, in the order they are joined (each 4-byte aligned). */
export type InitrdPart =
  | { kind: "image" | "modules"; path: string; bytes: number }
  /** Our init alone, for a disk root (the image's own is on the disk). */
  | { kind: "init"; bytes: number }
  /** run.conf and the report key (runconf.ts). */
  | { kind: "run.conf"; bytes: number };

export interface BootPlan {
  vmm: Vmm;
  arch: Arch;
  kernel: {
    path: string;
    label: string;
    format: KernelKind["format"];
    /** The image itself: a kernel with its app built in. */
    embedded: boolean;
    /** Firecracker: what the kernel file needs first (a bzImage's vmlinux, an Image.gz inflated). */
    convert?: "vmlinux" | "gunzip";
  };
  initrd: InitrdPart[];
  /** The text of run.conf (in the run.conf part). */
  runConf: string;
  reportKey?: string;
  /** Root disk first, then the volumes, each with its mode. */
  disks: Disk[];
  cmdline: string;
  /** `sizedMiB`: what it is when sized from the image (the default without --mem). */
  memory: { mib: number; reason: string; sizedMiB: number };
  cpus: number;
  /** QEMU: the machine it runs (ACPI on or off for microvm). */
  qemu?: HostFacts & { acpi: boolean };
  network:
    | { kind: "user"; forwards: readonly PortForward[] }
    | { kind: "tap"; tap: string; guest: GuestNetwork }
    | { kind: "none" };
  /** Firecracker: a vsock device. */
  vsockCid?: number;
  /** How the app is stopped: Ctrl-Alt-Del through QMP (then killed after the grace), or the VMM killed at once. */
  stop: { how: "ctrl-alt-del" | "kill"; graceMs: number; timeoutMs?: number };
  /** What the user should know before it boots. */
  notes: string[];
  /** Firecracker: the oldest release that can see this kernel's devices. */
  minFirecracker?: readonly [number, number];
  /** QEMU: the snapshot control channel (a virtio-serial port, control.ts). */
  control?: boolean;
  /** QEMU: the state to resume instead of booting (resume.ts): the snapshot file; no initrd then. */
  resume?: { snapshot: string };
  /** QEMU: the guest's RAM is this file (a snapshot's, docs/snapshot.md): shared while made, private on resume. */
  ram?: { path: string; shared: boolean };
}

/** machine-config.vcpu_count's maximum in firecracker.yaml. */
const MAX_FIRECRACKER_VCPUS = 32;

const root = (f: BootFacts) =>
  f.image.kind === "disk" ? { path: f.image.path, identity: f.image.identity } : undefined;

/** The disks of the boot (throws the disk refusals). */
function disksOf(f: BootFacts, o: BootOptions): DiskPlan {
  return planDisks(root(f), Boolean(o.readOnly), f.volumes);
}

/**
 * What the kernel must bring, known before it is resolved: the virtio transport (which boot
 * modules a fetched kernel takes) and the modules for the VM's devices and disks.
 */
export function kernelNeeds(
  f: Omit<BootFacts, "kernel">,
  o: BootOptions,
): { transport: Transport; modules: string[] } {
  const disks = disksOf(f, o);
  const devices =
    o.vmm === "firecracker"
      ? [
          ...(disks.disks.length ? ["virtio_blk"] : []),
          ...(o.vsockCid !== undefined ? ["vmw_vsock_virtio_transport"] : []),
        ]
      : o.control
        ? [CONTROL_MODULE]
        : [];
  const modules = [...devices, ...disks.modules].filter((m, i, all) => all.indexOf(m) === i);
  const transport = o.vmm === "qemu" && f.host?.machine === "pc" ? "pci" : "mmio";
  return { transport, modules };
}

/** The tap's guest settings: --guest-ip/--gateway, else the tap's default. */
function tapNetwork(o: BootOptions): GuestNetwork | undefined {
  if (!o.tap) {
    if (o.guestIp || o.gateway) throw new RunFailure("--guest-ip and --gateway need --tap");
    return undefined;
  }
  const d = defaultTapNetwork(o.tap);
  if (!o.guestIp) return o.gateway ? { ...d, gateway: o.gateway } : d;
  return { ip: o.guestIp, ...(o.gateway ? { gateway: o.gateway } : {}) };
}

/** The refusals that depend on the options and the VMM alone. */
function checkOptions(f: BootFacts, o: BootOptions, net: GuestNetwork | undefined): void {
  if (o.vmm === "qemu") {
    const firecrackerOnly = [
      o.tap && "--tap",
      o.guestIp && "--guest-ip",
      o.gateway && "--gateway",
      o.vsockCid !== undefined && "--vsock",
    ].filter(Boolean);
    if (firecrackerOnly.length)
      throw new RunFailure(
        `${firecrackerOnly.join(", ")}: only with --vmm firecracker (QEMU uses -p forwards)`,
      );
  } else {
    if (o.forwards.length) {
      const where = net && o.tap ? reachLine(o.tap, net) : "give --tap NAME to put the guest on a tap device";
      throw new RunFailure(
        `-p: Firecracker has no port forwards; reach the guest on its tap instead: ${where}`,
      );
    }
    if (o.cpus > MAX_FIRECRACKER_VCPUS)
      throw new RunFailure(`--cpus ${o.cpus}: Firecracker runs at most ${MAX_FIRECRACKER_VCPUS} vCPUs`);
  }
  if (o.readOnlyFlag && (f.image.kind !== "disk" || f.image.identity.format !== "ext4"))
    throw new RunFailure(
      `--read-only: for an ext4 root (${f.image.path} is ${
        f.image.kind === "disk"
          ? f.image.identity.format
          : f.image.kind === "embedded"
            ? "a kernel with its app in RAM"
            : "not a disk image"
      }, read-only anyway)`,
    );
  if (f.image.kind === "embedded") {
    if (o.vmm !== "qemu")
      throw new RunFailure(`${f.image.path} is a kernel with its app built in: only QEMU boots it so far`);
    if (o.kernel !== undefined || o.modules !== undefined)
      throw new RunFailure(
        `${f.image.path} is a kernel with its app built in: --kernel and --modules do not apply`,
      );
  }
}

/** How the user reaches a guest on a tap, in one line. */
export function reachLine(tap: string, net: GuestNetwork): string {
  const addr = net.ip.replace(/\/\d+$/, "");
  const host = net.gateway
    ? ` (host side, as root: ${shellQuote(["ip", "addr", "add", `${net.gateway}/${net.ip.split("/")[1] ?? "24"}`, "dev", tap])} && ${shellQuote(["ip", "link", "set", tap, "up"])})`
    : "";
  return `the guest is ${addr} on ${tap}${host}`;
}

/** The kernel the plan boots, checked against the image and the VMM. */
function planKernel(f: BootFacts, o: BootOptions, disks: readonly Disk[]): BootPlan["kernel"] {
  if (f.image.kind === "embedded")
    return { path: f.image.path, label: f.image.path, format: f.image.kernel.format, embedded: true };
  const k = f.kernel;
  if (!k) throw new Error("boot plan: no kernel facts");
  if (k.kind.arch !== f.arch)
    throw new RunFailure(`kernel ${k.label} is ${k.kind.arch}, but the image ${f.image.path} is ${f.arch}`);
  const problem = kernelDiskProblem(disks, k.config, k.label);
  if (problem) throw new RunFailure(problem);
  let convert: "vmlinux" | "gunzip" | undefined;
  if (o.vmm === "firecracker") {
    if (k.kind.arch === "amd64") convert = k.kind.format === "elf" ? undefined : "vmlinux";
    else if (k.kind.format === "elf")
      throw new RunFailure(`kernel ${k.label}: Firecracker on aarch64 boots an Image, not an ELF vmlinux`);
    else convert = k.gzip ? "gunzip" : undefined;
  }
  return {
    path: k.path,
    label: k.label,
    format: k.kind.format,
    embedded: false,
    ...(convert ? { convert } : {}),
  };
}

const MiB = 1 << 20;
const sum = (fs: readonly Files[]): Files => {
  const total = (get: (x: Files) => number | undefined) => fs.reduce((n, x) => n + (get(x) ?? 0), 0);
  const sizes = [...new Set(fs.flatMap((x) => Object.keys(x.largePages ?? {}).map(Number)))];
  return {
    tmpfsBytes: total((x) => x.tmpfsBytes),
    inodes: total((x) => x.inodes),
    // A part without a count for a page size leaves memory.ts to bound it.
    ...(fs.every((x) => x.largePages)
      ? { largePages: Object.fromEntries(sizes.map((p) => [p, total((x) => x.largePages?.[p])])) }
      : {}),
  };
};

/** --mem when it is enough (else refused, memory.ts), or sized from what unpacks into RAM on this kernel; with why. */
function planMemory(
  f: BootFacts,
  o: BootOptions,
  inRam: Files,
  initrdBytes: number,
  rule: KernelRule,
): BootPlan["memory"] {
  const fp: Footprint = { ...inRam, initrdBytes };
  const mib = chooseMemoryMiB(fp, f.arch, o.memMiB, f.image.path, rule);
  const sizedMiB = defaultMemoryMiB(fp, f.arch, rule);
  const files = `${Math.ceil(inRam.tmpfsBytes / MiB)} MiB of files unpacked into RAM`;
  const need = memoryRefusedBelowMiB(fp, f.arch, rule);
  const kernel = rule.measured ? "" : `; ${rule.name}: an estimate`;
  const reason =
    o.memMiB !== undefined
      ? `--mem (${files}: at least ${need} MiB${kernel})`
      : `sized from the image (${files}: at least ${need} MiB, ${sizedMiB} MiB with room for the app${kernel})`;
  return { mib, reason, sizedMiB };
}

/**
 * The boot. Throws a RunFailure (or memory.ts's MemoryTooSmall) naming what the user asked
 * for that cannot be, in one line.
 */
export function planBoot(f: BootFacts, o: BootOptions): BootPlan {
  const tap = o.vmm === "firecracker" ? tapNetwork(o) : undefined;
  checkOptions(f, o, tap);
  const disks = disksOf(f, o);
  const kernel = planKernel(f, o, disks.disks);
  const config = f.kernel?.config;
  const notes: string[] = [];
  let minFirecracker: readonly [number, number] | undefined;
  if (o.vmm === "firecracker") {
    const verdict = checkFirecrackerKernel(config, f.arch, kernel.label, {
      net: Boolean(o.tap),
      disks: disks.disks.length > 0,
      vsock: o.vsockCid !== undefined,
    });
    if (verdict.fatal) throw new RunFailure(verdict.fatal);
    notes.push(...verdict.notes);
    minFirecracker = verdict.minVersion;
  }
  const modules = f.kernel?.modules;
  const runConf = runConfText({
    network: o.vmm === "qemu" ? true : (tap ?? false),
    env: o.env,
    ...(o.args ? { args: o.args } : {}),
    ...(o.trace ? { trace: true } : {}),
    ...(modules ? { modulesDir: `/${GUEST_MODULES_DIR}` } : {}),
    disks: disks.records,
    ...(o.control ? { control: CONTROL_PORT_NAME } : {}),
  });
  const conf: InitrdPart = { kind: "run.conf", bytes: runConfCpioSize(runConf, o.reportKey) };
  const mods: InitrdPart[] = modules ? [{ kind: "modules", path: modules.path, bytes: modules.bytes }] : [];
  let initrd: InitrdPart[];
  if (f.image.kind === "embedded") initrd = [conf];
  else if (f.image.kind === "disk") initrd = [{ kind: "init", bytes: f.image.initBytes }, ...mods, conf];
  else {
    const image: InitrdPart = { kind: "image", path: f.image.path, bytes: f.image.bytes };
    // The kernel's legacy-lz4 decoder has no end mark: it reads on into the next archive and
    // fails there, losing it (run.conf and its report key). An lz4 image therefore goes last.
    initrd = f.image.lz4 ? [...mods, conf, image] : [image, ...mods, conf];
  }
  const initrdBytes = initrd.reduce((n, p) => n + p.bytes + pad4(p.bytes), 0);
  // What unpacks into RAM: the image (the built-in one of an embedded kernel, which the
  // kernel file holds compressed while it unpacks), the modules; our init and run.conf are
  // a few KiB, within the headroom.
  const inRam = sum([
    ...(f.image.kind === "disk" ? [] : [f.image.files]),
    ...(modules ? [modules.files] : []),
  ]);
  const held = initrdBytes + (f.image.kind === "embedded" ? f.image.bytes : 0);
  const rule = f.image.kind === "embedded" ? f.image.rule : (f.kernel?.rule ?? unknownKernelRule(f.arch));
  const memory = planMemory(f, o, inRam, held, rule);
  const warning = memoryWarning(
    rule,
    f.image.kind === "embedded" ? f.image.path : kernel.label,
    memory.mib,
    o.memMiB,
  );
  if (warning) notes.push(warning);

  let cmdline: string;
  let qemu: BootPlan["qemu"];
  if (o.vmm === "qemu") {
    const host = f.host;
    if (!host) throw new Error("boot plan: no host facts for QEMU");
    // A kernel that takes its virtio-mmio devices from the command line runs microvm without
    // ACPI (as Firecracker gives them); one with a modular virtio_mmio needs ACPI's tables.
    // slimroot's kernel (an embedded one too) takes them from the command line.
    const acpi = kernel.embedded ? false : !(config && hasCmdlineDevices(config));
    qemu = { ...host, acpi };
    cmdline = kernelCmdline({ arch: f.arch, ...qemu });
  } else {
    cmdline = firecrackerBootArgs(f.arch);
  }
  if (o.timeline) cmdline = timelineCmdline(cmdline);
  // A snapshot saves every page the guest ever wrote: freed ones zeroed (the initrd's copy,
  // what unpacking it used) are saved as a flag each, not 4 KiB.
  if (o.control) cmdline = `${cmdline} init_on_free=1`;
  if (tap && o.tap) notes.push(reachLine(o.tap, tap));
  return {
    vmm: o.vmm,
    arch: f.arch,
    kernel,
    initrd,
    runConf,
    ...(o.reportKey ? { reportKey: o.reportKey } : {}),
    disks: disks.disks,
    cmdline,
    memory,
    cpus: o.cpus,
    ...(qemu ? { qemu } : {}),
    network:
      o.vmm === "qemu"
        ? { kind: "user", forwards: o.forwards }
        : tap && o.tap
          ? { kind: "tap", tap: o.tap, guest: tap }
          : { kind: "none" },
    ...(o.vsockCid !== undefined ? { vsockCid: o.vsockCid } : {}),
    stop: {
      how: o.vmm === "qemu" ? "ctrl-alt-del" : "kill",
      graceMs: o.stopGraceMs,
      ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
    },
    notes,
    ...(minFirecracker ? { minFirecracker } : {}),
    ...(o.control ? { control: true } : {}),
    ...(o.ramFile && o.vmm === "qemu" ? { ram: { path: o.ramFile, shared: true } } : {}),
  };
}

/** The plan in words, a line each (run --dry-run prints them on stderr). */
export function describePlan(p: BootPlan): string[] {
  const part = (x: InitrdPart) => `${x.kind}${"path" in x ? ` ${x.path}` : ""} (${x.bytes} bytes)`;
  const net =
    p.network.kind === "user"
      ? `user networking${p.network.forwards.length ? `, ${p.network.forwards.length} port forward(s)` : ""}`
      : p.network.kind === "tap"
        ? `${p.network.guest.ip} on tap ${p.network.tap}`
        : "none";
  return [
    `${p.vmm === "qemu" ? "QEMU" : "Firecracker"} ${p.arch}${p.qemu ? ` (${p.qemu.machine}${p.qemu.machine === "microvm" ? `, ACPI ${p.qemu.acpi ? "on" : "off"}` : ""}, ${p.qemu.accel})` : ""}`,
    `kernel: ${p.kernel.label}${p.kernel.embedded ? " (the app built in)" : ""}${p.kernel.convert ? ` (${p.kernel.convert === "vmlinux" ? "its vmlinux extracted" : "inflated"})` : ""}`,
    p.resume
      ? `resume: the state saved in ${p.resume.snapshot} (no initrd)`
      : `initrd: ${p.initrd.map(part).join(", ")}`,
    ...p.disks.map(
      (d) => `disk: ${d.path} at ${d.mount}, ${d.format ?? "?"}, ${d.readOnly ? "read-only" : "read-write"}`,
    ),
    `command line: ${p.cmdline}`,
    `memory: ${p.memory.mib} MiB, ${p.memory.reason}${p.ram ? `; the file ${p.ram.path}, ${p.ram.shared ? "shared" : "private (copy-on-write)"}` : ""}`,
    `cpus: ${p.cpus}`,
    `network: ${net}${p.vsockCid !== undefined ? `; vsock CID ${p.vsockCid}` : ""}`,
    `stop: ${p.stop.how === "ctrl-alt-del" ? `Ctrl-Alt-Del, the VMM killed after ${p.stop.graceMs / 1000} s` : "the VMM killed at once"}${p.stop.timeoutMs !== undefined ? `; --timeout ${p.stop.timeoutMs / 1000} s` : ""}`,
  ];
}
