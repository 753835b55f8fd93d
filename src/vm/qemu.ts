/**
 * The QEMU command line for a slimroot VM. Choices, each from boots of Debian 12's cloud
 * kernel on QEMU 7.2 under TCG (see docs/run.md):
 *
 * - amd64 runs on `microvm` with ACPI: QEMU describes its virtio-mmio slots in the DSDT and
 *   the modular virtio_mmio driver finds them once the init loads it. microvm has no HPET or
 *   PM timer, so on a busy host the kernel's PIT calibration of the TSC fails and the boot
 *   hangs for good; `tsc_early_khz` (TCG's guest TSC ticks at the host's rate) avoids the
 *   calibration and `tsc=reliable` the watchdog that would then distrust it. Without a
 *   known host TSC rate we use `pc`, which has an HPET.
 * - arm64 runs on `virt` (cortex-a57 under TCG) with virtio-mmio devices from the device tree.
 * - virtio-mmio must be modern (`force-legacy=false`): virtio-input, our way to send
 *   Ctrl-Alt-Del, refuses legacy devices.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { ARCH, type Arch, hostArch } from "../arch/arch.js";
import { UserError } from "../util/errors.js";
import { CONTROL_PORT_NAME } from "./control.js";
import { hostfwd, type PortForward } from "./ports.js";

export type Machine = "microvm" | "pc" | "virt";
export type Accel = "tcg" | "kvm";

/** The QOM path of the keyboard we press Ctrl-Alt-Del on (virtio machines). */
export const KEYBOARD_ID = "kbd";

export interface VmConfig {
  arch: Arch;
  machine: Machine;
  accel: Accel;
  kernel: string;
  initrd?: string;
  /** Whether the kernel has ACPI; without it microvm lists its devices on the command line. */
  acpi?: boolean;
  /** The kernel command line (the boot plan's); default: kernelCmdline(this). */
  cmdline?: string;
  memMiB: number;
  cpus: number;
  forwards: readonly PortForward[];
  qmpSocket: string;
  /** Disks in order (a disk root first): virtio-blk, raw. */
  drives?: readonly { file: string; readOnly: boolean }[];
  /** amd64 on microvm under TCG: the host's TSC rate. */
  tscKhz?: number;
  /** The snapshot control channel's unix socket (control.ts): a virtio-serial port on it. */
  controlSocket?: string;
  /** Resume: QEMU's `-incoming` URI (the machine above must be the one that was saved). */
  incoming?: string;
  /**
   * A snapshot's guest RAM as a file (docs/snapshot.md): mapped shared while the snapshot is
   * made (the guest writes the file), private when resumed (pages read on demand, copied on
   * write, the file never written).
   */
  ramFile?: { path: string; shared: boolean };
}

/** The id of the memory backend a snapshot's RAM file is (`-machine memory-backend=`). */
const RAM_BACKEND_ID = "ram0";

export function qemuBinary(arch: Arch): string {
  return ARCH[arch].qemuBinary;
}

/**
 * TCG unless SLIMROOT_ACCEL=kvm: on this project's machines /dev/kvm exists but a guest
 * started with it hangs, so KVM is never assumed. KVM can only run the host's architecture.
 */
export function chooseAccel(arch: Arch, env: NodeJS.ProcessEnv = process.env): Accel {
  const want = env.SLIMROOT_ACCEL;
  if (!want || want === "tcg") return "tcg";
  if (want !== "kvm") throw new UserError(`SLIMROOT_ACCEL=${want}: expected tcg or kvm`);
  if (hostArch() !== arch)
    throw new UserError(`SLIMROOT_ACCEL=kvm: cannot run an ${arch} guest on this host`);
  return "kvm";
}

/** The host's TSC rate in kHz when it is constant (SLIMROOT_TSC_KHZ overrides). */
export function hostTscKhz(env: NodeJS.ProcessEnv = process.env, cpuinfo?: string): number | undefined {
  if (env.SLIMROOT_TSC_KHZ) {
    const n = Number(env.SLIMROOT_TSC_KHZ);
    if (!Number.isInteger(n) || n <= 0)
      throw new UserError(`SLIMROOT_TSC_KHZ=${env.SLIMROOT_TSC_KHZ}: expected kHz`);
    return n;
  }
  if (cpuinfo === undefined) {
    if (process.arch !== "x64") return undefined;
    try {
      cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
    } catch {
      return undefined;
    }
  }
  const flags = /^flags\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.split(/\s+/) ?? [];
  const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1]);
  if (!flags.includes("constant_tsc") || !(mhz > 0)) return undefined;
  return Math.round(mhz * 1000);
}

/** The machine type: SLIMROOT_MACHINE=pc|microvm overrides the amd64 choice. */
export function chooseMachine(
  arch: Arch,
  accel: Accel,
  tscKhz: number | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Machine {
  if (arch === "arm64") return "virt";
  const want = env.SLIMROOT_MACHINE;
  if (want === "pc" || want === "microvm") return want;
  if (want) throw new UserError(`SLIMROOT_MACHINE=${want}: expected pc or microvm`);
  return accel === "kvm" || tscKhz ? "microvm" : "pc";
}

export function kernelCmdline(c: Pick<VmConfig, "arch" | "machine" | "accel" | "tscKhz" | "acpi">): string {
  if (c.arch === "arm64") return "console=ttyAMA0 panic=-1 quiet";
  // reboot=t: the init ends the VM with a reboot; a triple fault is the quickest one.
  const args = ["console=ttyS0", "reboot=t", "panic=-1", "quiet"];
  // microvm without ACPI has no PCI bus: say so instead of letting the kernel probe for one.
  if (c.machine === "microvm" && c.acpi === false) args.push("pci=off");
  if (c.machine === "microvm" && c.accel === "tcg" && c.tscKhz) {
    args.push(`tsc_early_khz=${c.tscKhz}`, "tsc=reliable");
    // Calibrating the local APIC timer against the TSC and then checking it against the PIT
    // takes 0.2-0.3 s of polling under TCG, and the check fails on a busy host anyway (the
    // kernel then ticks from the PIT): tick from the PIT at once. Checking that the PIT's
    // interrupt arrives through the IO-APIC is a wait of its own: QEMU's does. Only without
    // ACPI: a kernel that reads microvm's ACPI tables (Debian's) does not tick from the PIT
    // and, without its APIC timer, never wakes from its first sleep.
    if (c.acpi === false) args.push("noapictimer", "no_timer_check");
  }
  // A VM of one CPU turns every lock prefix of the kernel's code into a no-op, some 4,000
  // one-byte writes to code: each makes TCG throw away what it translated (0.1 s).
  if (c.accel === "tcg") args.push("noreplace-smp");
  // The 8250 driver probes 4 legacy ports; QEMU and Firecracker have one.
  args.push("8250.nr_uarts=1");
  return args.join(" ");
}

/** [binary, ...arguments]. */
export function qemuCommand(c: VmConfig): string[] {
  const net = ["user", "id=n0", ...c.forwards.map(hostfwd)].join(",");
  const args = [qemuBinary(c.arch)];
  const mmio = c.machine !== "pc";
  if (c.machine === "microvm") args.push("-M", `microvm,acpi=${c.acpi === false ? "off" : "on"}`);
  else if (c.machine === "pc") args.push("-M", "pc");
  else args.push("-M", "virt", "-cpu", c.accel === "kvm" ? "host" : "cortex-a57");
  if (c.arch === "amd64" && c.accel === "kvm") args.push("-cpu", "host");
  args.push(
    "-accel",
    c.accel,
    "-m",
    String(c.memMiB),
    "-smp",
    String(c.cpus),
    "-nodefaults",
    "-no-user-config",
    "-no-reboot",
    "-display",
    "none",
    "-serial",
    "stdio",
  );
  if (mmio) args.push("-global", "virtio-mmio.force-legacy=false");
  if (c.ramFile)
    args.push(
      "-object",
      `memory-backend-file,id=${RAM_BACKEND_ID},size=${c.memMiB}M,mem-path=${optionPath(c.ramFile.path)},share=${c.ramFile.shared ? "on" : "off"}`,
      "-machine",
      `memory-backend=${RAM_BACKEND_ID}`,
    );
  args.push(
    "-kernel",
    c.kernel,
    ...(c.initrd ? ["-initrd", c.initrd] : []),
    "-append",
    c.cmdline ?? kernelCmdline(c),
    "-netdev",
    net,
    "-device",
    mmio ? "virtio-net-device,netdev=n0" : "virtio-net-pci,netdev=n0",
    "-device",
    mmio ? "virtio-rng-device" : "virtio-rng-pci",
  );
  for (const [i, d] of (c.drives ?? []).entries()) {
    args.push(
      "-drive",
      `file=${optionPath(d.file)},format=raw,if=none,id=disk${i},cache=writeback${d.readOnly ? ",readonly=on" : ""}`,
      "-device",
      `${mmio ? "virtio-blk-device" : "virtio-blk-pci"},drive=disk${i}`,
    );
  }
  // pc has a PS/2 keyboard built in (atkbd is built into the kernel); the others get one.
  if (mmio) args.push("-device", `virtio-keyboard-device,id=${KEYBOARD_ID}`);
  if (c.controlSocket) {
    args.push(
      "-chardev",
      `socket,id=ctl,path=${optionPath(c.controlSocket)},server=on,wait=off`,
      "-device",
      `${mmio ? "virtio-serial-device" : "virtio-serial-pci"},id=vser0`,
      "-device",
      `virtserialport,bus=vser0.0,nr=1,chardev=ctl,name=${CONTROL_PORT_NAME}`,
    );
  }
  if (c.incoming) args.push("-incoming", c.incoming);
  args.push("-qmp", `unix:${optionPath(c.qmpSocket)},server=on,wait=off`);
  return args;
}

/**
 * A host path as a value inside a `-opt key=value,...` option (-drive file=, -qmp unix:,
 * any chardev path): QEMU splits those on "," and reads ",," as one comma. Made absolute
 * too, so that a name like "nbd:x" is never taken for a protocol. Every such path in the
 * command line goes through here; -kernel, -initrd and -append take their argument whole
 * and are never escaped (a doubled comma there would be two).
 */
export function optionPath(path: string): string {
  return resolve(path).replace(/,/g, ",,");
}
