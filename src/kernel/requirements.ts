/**
 * The one table of kernel requirements: feature -> config options -> who needs them (the init,
 * a disk format, a VMM, a device, a run feature), each with the reason. Everything about a
 * kernel's options is derived from it:
 * - `kernel build` locks exactly these options (a user's fragment may turn off anything else
 *   slimroot's default fragments chose: fragment.ts) and checks them after olddefconfig
 *   (kconfig.ts): `lockedOptions`;
 * - `run` checks a kernel it did not build for what the boot uses (`missingOptions`): a disk
 *   format's filesystem (vm/disks.ts), Firecracker's minimum and its devices' drivers
 *   (vm/firecracker.ts), and whether virtio-mmio devices can be given on the command line
 *   (`hasCmdlineDevices`: QEMU microvm without ACPI, Firecracker);
 * - the README's list (`requirementsMarkdown`, checked by test/kernel-requirements.test.ts) and
 *   `push`'s `kernelNeeds` (`KERNEL_REQUIREMENTS`).
 * A new disk format, VMM or init feature is a row here. The fragments in config/ still say
 * what slimroot's own kernel sets (they are its cache key); the test checks they set every
 * option of this table.
 */
import type { Arch } from "../arch/arch.js";
import type { DiskFormat } from "../disk/formats.js";
import { SQUASHFS_COMPRESSION } from "../disk/squashfs.js";
import { configured, type KernelConfig } from "./config.js";

/** What `run` checks an option for, on a kernel slimroot did not build. */
export type Use =
  /** every VM under Firecracker */
  | "firecracker"
  /** a Firecracker VM with devices (a tap, disks, vsock): the transport */
  | "firecracker-devices"
  /** a device's driver */
  | "net"
  | "disks"
  | "vsock"
  /** virtio-mmio devices read from the kernel command line (`virtio_mmio.device=`) */
  | "cmdline-devices"
  /** a disk image of this format, as the root or a --volume */
  | `disk:${DiskFormat}`;

/** "y": built in (a module will not do: the init loads modules without parameters, or before it runs); "on": y or m. */
type Strictness = "y" | "on";

/** An option's entry: for which checks of `run` it counts, and how strictly. */
type Checked = Partial<Record<Use, Strictness>> & {
  /** What goes wrong without it (the end of "no CONFIG_X, so ..."); else the row's. */
  lacking?: string;
};

interface Row {
  /** Who needs it: the init, a format, a VMM or a run feature (the README's and push's words). */
  need: string;
  /** Option names without the CONFIG_ prefix, in order; built in (=y) in slimroot's kernel. */
  options: Record<string, Checked>;
  /** Only on this architecture. */
  arch?: Arch;
  lacking?: string;
}

const diskFormat = (format: DiskFormat, options: Record<string, Strictness>): Row => ({
  need: `${format} disk images`,
  options: Object.fromEntries(Object.entries(options).map(([name, s]) => [name, { [`disk:${format}`]: s }])),
});

/**
 * The table. A disk format's row: its filesystem, the decompressor our writers use (erofs.ts,
 * squashfs.ts) and the xattr support they keep (security.capability: without it a file
 * capability is silently not there, and a non-root app that binds port 80 fails with EACCES).
 */
const ROWS: readonly Row[] = [
  {
    need: "slimroot's init (an ELF loaded from an initramfs)",
    options: { BLK_DEV_INITRD: { firecracker: "y" }, BINFMT_ELF: {}, MULTIUSER: {} },
    lacking: "slimroot's init cannot be loaded",
  },
  {
    need: "the init's mounts (devtmpfs, proc, sysfs, tmpfs, devpts)",
    options: { DEVTMPFS: {}, PROC_FS: {}, SYSFS: {}, SHMEM: {}, TMPFS: {}, TTY: {}, UNIX98_PTYS: {} },
  },
  {
    need: "the initramfs compressions slimroot writes",
    options: { RD_GZIP: {}, RD_XZ: {}, RD_ZSTD: {}, RD_LZ4: {} },
  },
  { need: "xz initramfs archives with the x86 BCJ filter", options: { XZ_DEC_X86: {} }, arch: "amd64" },
  { need: "the console (the app's output and exit report, kernel panics)", options: { PRINTK: {} } },
  {
    need: "the serial console of QEMU and Firecracker",
    options: { SERIAL_8250: {}, SERIAL_8250_CONSOLE: { firecracker: "y" } },
    lacking: "the console and the app's exit report are invisible",
  },
  {
    need: "the serial console of QEMU virt",
    options: { ARM_AMBA: {}, SERIAL_AMBA_PL011: {}, SERIAL_AMBA_PL011_CONSOLE: {} },
    arch: "arm64",
  },
  { need: "Firecracker's serial console on arm64", options: { SERIAL_OF_PLATFORM: {} }, arch: "arm64" },
  {
    need: "virtio over mmio (QEMU microvm/virt, Firecracker; devices on the command line)",
    options: {
      VIRTIO: {},
      VIRTIO_MMIO: { "firecracker-devices": "on", "cmdline-devices": "y" },
      VIRTIO_MMIO_CMDLINE_DEVICES: { "cmdline-devices": "y" },
    },
    lacking: "its network, disks and vsock are invisible",
  },
  { need: "virtio over pci (QEMU pc)", options: { PCI: {}, VIRTIO_PCI: {} } },
  {
    need: "Firecracker's x86_64 minimum (and CPUs without ACPI)",
    options: { KVM_GUEST: { firecracker: "y" }, X86_MPPARSE: {} },
    arch: "amd64",
    lacking: "Firecracker's x86_64 minimum is not met",
  },
  { need: "QEMU's -kernel with an ELF vmlinux (PVH entry)", options: { PVH: {} }, arch: "amd64" },
  {
    need: "the network the init configures (-p, --tap)",
    options: {
      NET: {},
      INET: {},
      UNIX: {},
      NETDEVICES: {},
      VIRTIO_NET: { net: "on", lacking: "no network on the tap" },
    },
  },
  {
    need: "run's graceful stop (Ctrl-Alt-Del on a virtio keyboard)",
    options: { INPUT: {}, VIRTIO_INPUT: {}, VT: {} },
  },
  {
    need: "Ctrl-Alt-Del on QEMU pc and Firecracker's SendCtrlAltDel",
    options: { SERIO_I8042: {}, KEYBOARD_ATKBD: {} },
    arch: "amd64",
  },
  {
    need: "--vsock",
    options: { VSOCKETS: {}, VIRTIO_VSOCKETS: { vsock: "on", lacking: "no vsock" } },
  },
  { need: "slimroot trace (fanotify)", options: { FANOTIFY: {} } },
  {
    // init/control.c: the freeze/resume channel is a named virtio-serial port; a resume reseeds
    // the kernel's pool from virtio-rng (docs/snapshot.md).
    need: "slimroot snapshot (the control channel, reseeding from virtio-rng)",
    options: { VIRTIO_CONSOLE: {}, HW_RANDOM: {}, HW_RANDOM_VIRTIO: {} },
  },
  {
    need: "disk images and --volume",
    options: { BLOCK: {}, BLK_DEV: {}, VIRTIO_BLK: { disks: "on", lacking: "no disks" } },
  },
  { need: "read-only disk roots (an overlay over them)", options: { OVERLAY_FS: {} } },
  diskFormat("ext4", { EXT4_FS: "on", EXT4_FS_SECURITY: "y" }),
  diskFormat("erofs", {
    EROFS_FS: "on",
    EROFS_FS_ZIP: "y",
    LZ4_DECOMPRESS: "on",
    EROFS_FS_XATTR: "y",
    EROFS_FS_SECURITY: "y",
  }),
  diskFormat("squashfs", {
    SQUASHFS: "on",
    [`SQUASHFS_${SQUASHFS_COMPRESSION.toUpperCase()}`]: "y",
    SQUASHFS_XATTR: "y",
  }),
];

export interface KernelRequirement {
  /** Who needs it: the init, a format, a VMM or a run feature. */
  need: string;
  /** Option names, with the CONFIG_ prefix; built in (=y) in slimroot's kernel. */
  options: readonly string[];
  /** Only on this architecture. */
  arch?: Arch;
}

/** The table as rows of option names (push's `kernelNeeds`, docs/push.md). */
export const KERNEL_REQUIREMENTS: readonly KernelRequirement[] = ROWS.map((r) => ({
  need: r.need,
  options: Object.keys(r.options).map((o) => `CONFIG_${o}`),
  ...(r.arch ? { arch: r.arch } : {}),
}));

const onArch = (r: Row, arch: Arch) => !r.arch || r.arch === arch;

/** Option name -> the need that locks it, for `arch`. */
export function lockedOptions(arch: Arch): Map<string, string> {
  const out = new Map<string, string>();
  for (const r of KERNEL_REQUIREMENTS) {
    if (r.arch && r.arch !== arch) continue;
    for (const o of r.options) if (!out.has(o)) out.set(o, r.need);
  }
  return out;
}

/** An option `config` lacks for a use: "CONFIG_X" (y or m would do) or "CONFIG_X=y". */
export interface MissingOption {
  /** "CONFIG_X". */
  name: string;
  /** "CONFIG_X", or "CONFIG_X=y" when only built in will do. */
  option: string;
  /** What goes wrong without it. */
  lacking?: string;
}

/** The options `use` needs that `config` lacks, in table order (`arch` undefined: every row). */
export function missingOptions(config: KernelConfig, use: Use, arch?: Arch): MissingOption[] {
  const out: MissingOption[] = [];
  for (const r of ROWS) {
    if (arch && !onArch(r, arch)) continue;
    for (const [name, checked] of Object.entries(r.options)) {
      const want = checked[use];
      const got = configured(config, name);
      if (!want || (want === "y" ? got === "y" : got)) continue;
      const lacking = checked.lacking ?? r.lacking;
      out.push({
        name: `CONFIG_${name}`,
        option: want === "y" ? `CONFIG_${name}=y` : `CONFIG_${name}`,
        ...(lacking ? { lacking } : {}),
      });
    }
  }
  return out;
}

/**
 * virtio-mmio built in with devices from the kernel command line (`virtio_mmio.device=`,
 * which Firecracker and QEMU microvm without ACPI give): a module would not see them, since
 * our init loads modules without parameters.
 */
export function hasCmdlineDevices(c: KernelConfig): boolean {
  return missingOptions(c, "cmdline-devices").length === 0;
}

/** What each use means, for the README. */
const USE_WORDS: Record<Use, string> = {
  firecracker: "Firecracker",
  "firecracker-devices": "Firecracker with devices",
  net: "a network",
  disks: "disks",
  vsock: "vsock",
  "cmdline-devices": "devices on the command line (QEMU microvm without ACPI)",
  "disk:ext4": "an ext4 disk",
  "disk:erofs": "an erofs disk",
  "disk:squashfs": "a squashfs disk",
};

/** The README's list of the table (between its kernel-requirements markers). */
export function requirementsMarkdown(): string {
  const lines = [
    "| needed by | options (`CONFIG_`), all built in by `kernel build` | `run` checks a kernel's config for (=y: a module will not do) |",
    "|---|---|---|",
  ];
  for (const r of ROWS) {
    const checks = new Map<Use, string[]>();
    for (const [name, checked] of Object.entries(r.options))
      for (const [use, want] of Object.entries(checked))
        if (use !== "lacking")
          checks.set(use as Use, [...(checks.get(use as Use) ?? []), want === "y" ? `${name}=y` : name]);
    const checked = [...checks].map(([use, names]) => `${USE_WORDS[use]}: \`${names.join(" ")}\``).join("; ");
    const options = Object.keys(r.options)
      .map((n) => `\`${n}\``)
      .join(", ");
    lines.push(`| ${r.need}${r.arch ? ` (${r.arch} only)` : ""} | ${options} | ${checked} |`);
  }
  return lines.join("\n");
}
