/**
 * Firecracker's side of a slimroot VM: the config file for `firecracker --no-api
 * --config-file FILE` (objects as in Firecracker's API description, firecracker.yaml
 * `definitions`), the guest's MAC and address on a tap device, and what a kernel needs to
 * work under it. Pure functions; firecracker-launcher.ts writes the files and runs it.
 */
import { createHash } from "node:crypto";
import type { Arch } from "../arch/arch.js";
import { configured, type KernelConfig } from "../kernel/config.js";
import { hasCmdlineDevices, missingOptions, type Use } from "../kernel/requirements.js";
import type { Disk } from "./disks.js";
import type { GuestNetwork } from "./runconf.js";

/** The Firecracker release from which x86_64 guests find virtio devices through ACPI. */
export const ACPI_DEVICES_SINCE: readonly [number, number] = [1, 8];

/**
 * The kernel command line. Firecracker uses `boot_args` instead of its default line, so
 * the parts of that default we want come along: `reboot=k` (the init's reboot ends the
 * VM), `panic=1` (a panic reboots, which ends it too), the i8042 probes skipped. Its
 * `8250.nr_uarts=0` is left out: the serial console carries the app's output and the init's
 * exit report.
 */
export function firecrackerBootArgs(arch: Arch): string {
  const args = ["console=ttyS0", "reboot=k", "panic=1", "quiet"];
  if (arch === "amd64") args.push("i8042.noaux", "i8042.nomux", "i8042.dumbkbd");
  return args.join(" ");
}

/** IFNAMSIZ less the NUL: the longest interface name, in bytes. */
const MAX_INTERFACE_NAME = 15;

/**
 * Why `name` cannot be a network interface name, or undefined when it can: the kernel's own
 * rule (dev_valid_name(): 1-15 bytes, not "." or "..", no "/", ":" or byte its isspace()
 * takes, which includes 0xa0) and ours: no leading "-", which a command printed with it
 * (`ip link set -rf up`) would read as an option, and no control character (printed, it
 * would be a terminal's escape sequence). Anything else (`tap0;reboot`, `$(id)`) is a valid
 * name, and every command printed with it quotes it (util/shell.ts).
 */
export function interfaceNameProblem(name: string): string | undefined {
  const bytes = Buffer.from(name);
  if (bytes.length < 1 || bytes.length > MAX_INTERFACE_NAME)
    return `an interface name is 1 to ${MAX_INTERFACE_NAME} bytes (this is ${bytes.length})`;
  if (name === "." || name === "..") return `"${name}" is not an interface name`;
  if (name.startsWith("-")) return "an interface name starting with - would read as an option";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
  if (/[\x00-\x1f\x7f]/.test(name.replace(/[\t\n\v\f\r]/g, " ")))
    return "an interface name has no control characters";
  const bad = bytes.find(
    (b) => b === 0x2f || b === 0x3a || (b >= 0x09 && b <= 0x0d) || b === 0x20 || b === 0xa0,
  );
  if (bad !== undefined)
    return `an interface name has no ${bad === 0x2f ? '"/"' : bad === 0x3a ? '":"' : "whitespace"}`;
  return undefined;
}

/**
 * A locally administered unicast MAC (first octet 06, as in Firecracker's examples) whose
 * other bytes come from a hash of the tap's name: the same tap always gives the guest the
 * same MAC, and different taps on one host get different ones.
 */
export function guestMac(tap: string): string {
  const h = createHash("sha256").update(`slimroot tap ${tap}`).digest();
  return ["06", ...[...h.subarray(0, 5)].map((b) => b.toString(16).padStart(2, "0"))].join(":");
}

/**
 * The guest's default address on a tap: Firecracker's getting-started network (host
 * 172.16.0.1/30 on tap0, guest 172.16.0.2), with the tap name's trailing number N (0-255)
 * as the third octet, so tap3's guest is 172.16.3.2 behind 172.16.3.1.
 */
export function defaultTapNetwork(tap: string): GuestNetwork & { gateway: string } {
  const n = Number(/(\d+)$/.exec(tap)?.[1] ?? "0");
  const octet = n <= 255 ? n : 0;
  return { ip: `172.16.${octet}.2/30`, gateway: `172.16.${octet}.1` };
}

export interface FirecrackerVm {
  kernel: string;
  bootArgs: string;
  initrd: string;
  disks: readonly Disk[];
  memMiB: number;
  cpus: number;
  tap?: string;
  vsock?: { cid: number; udsPath: string };
  logPath?: string;
}

/** Drive ids: the root disk first ("root", the guest's vda), then vol1, vol2... */
export function driveIds(disks: readonly Disk[]): string[] {
  let n = 0;
  return disks.map((d) => (d.mount === "/" ? "root" : `vol${++n}`));
}

/**
 * The config file (with an entropy device, Firecracker 1.4+). Every disk is a plain virtio-blk drive (`is_root_device` false: the init
 * from the initrd mounts the root by UUID, not Firecracker's `root=/dev/vda`), read-only
 * where the disk is.
 */
export function firecrackerConfig(vm: FirecrackerVm): Record<string, unknown> {
  const ordered = [...vm.disks.filter((d) => d.mount === "/"), ...vm.disks.filter((d) => d.mount !== "/")];
  const ids = driveIds(ordered);
  const config: Record<string, unknown> = {
    "boot-source": { kernel_image_path: vm.kernel, boot_args: vm.bootArgs, initrd_path: vm.initrd },
    drives: ordered.map((d, i) => ({
      drive_id: ids[i],
      path_on_host: d.path,
      is_root_device: false,
      is_read_only: d.readOnly,
    })),
    "machine-config": { vcpu_count: vm.cpus, mem_size_mib: vm.memMiB, smt: false },
    "network-interfaces": vm.tap
      ? [{ iface_id: "eth0", host_dev_name: vm.tap, guest_mac: guestMac(vm.tap) }]
      : [],
  };
  if (vm.vsock) config.vsock = { guest_cid: vm.vsock.cid, uds_path: vm.vsock.udsPath };
  // virtio-rng, as slimroot's QEMU VMs have: apps that read randomness early do not wait.
  config.entropy = {};
  if (vm.logPath) config.logger = { log_path: vm.logPath, level: "Warning", show_level: true };
  return config;
}

/** The devices a VM has besides its serial console. */
export interface VmDevices {
  net?: boolean;
  disks?: boolean;
  vsock?: boolean;
}

/** What a kernel's config says about booting it under Firecracker. */
export interface KernelVerdict {
  /** Why it cannot work: run fails with this line (exit 125). */
  fatal?: string;
  /** One line each: what the user should know (a minimum Firecracker release, an unknown config). */
  notes: string[];
  /** The oldest Firecracker release this kernel can find its devices with. */
  minVersion?: readonly [number, number];
}

/**
 * Checks a kernel's config against what a slimroot VM under Firecracker needs (Firecracker's
 * kernel policy: an initrd, the 8250 serial console, kvm-clock on x86_64; and a way to find
 * virtio-mmio devices and their drivers when the VM has any). On x86_64 Firecracker puts each device on the
 * command line (`virtio_mmio.device=...`, read only by a built-in virtio_mmio with
 * CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES: our init loads modules without parameters) and, since
 * 1.8, in the ACPI DSDT (CONFIG_ACPI and CONFIG_PCI). On aarch64 they are in the device tree.
 */
export function checkFirecrackerKernel(
  config: KernelConfig | undefined,
  arch: Arch,
  label: string,
  devices: VmDevices,
): KernelVerdict {
  if (!config)
    return {
      notes: [
        `kernel ${label}: its config is unknown, so whether it can see Firecracker's devices is not checked (it needs CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y, or CONFIG_ACPI=y and CONFIG_PCI=y with Firecracker >= ${ACPI_DEVICES_SINCE.join(".")})`,
      ],
    };
  const missing = (name: string) => configured(config, name) !== "y";
  const fail = (why: string): KernelVerdict => ({
    fatal: `kernel ${label} cannot work with Firecracker: ${why}`,
    notes: [],
  });
  // The table's rows for Firecracker, then (with devices) the transport and each device's driver.
  const uses: Use[] = ["firecracker"];
  if (devices.net || devices.disks || devices.vsock) uses.push("firecracker-devices");
  if (devices.net) uses.push("net");
  if (devices.disks) uses.push("disks");
  if (devices.vsock) uses.push("vsock");
  for (const use of uses) {
    const [lack] = missingOptions(config, use, arch);
    if (lack) return fail(`no ${lack.name}${lack.lacking ? `, so ${lack.lacking}` : ""}`);
  }
  if (uses.length === 1) return { notes: [] };
  if (arch === "arm64") return { notes: [] };
  const cmdline = hasCmdlineDevices(config);
  const acpi = !missing("ACPI") && !missing("PCI");
  if (cmdline) return { notes: [] };
  if (!acpi)
    return fail(
      "no CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES (with a built-in virtio_mmio) and no ACPI, so its network, disks and vsock are invisible",
    );
  return {
    notes: [
      `kernel ${label} finds Firecracker's devices through ACPI only (no CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES): it needs Firecracker ${ACPI_DEVICES_SINCE.join(".")} or later`,
    ],
    minVersion: ACPI_DEVICES_SINCE,
  };
}

/** "Firecracker v1.10.1" -> [1, 10]. */
export function parseFirecrackerVersion(text: string): [number, number] | undefined {
  const m = /Firecracker v?(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

export function versionAtLeast(v: readonly [number, number], min: readonly [number, number]): boolean {
  return v[0] > min[0] || (v[0] === min[0] && v[1] >= min[1]);
}
