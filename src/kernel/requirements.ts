/**
 * The table of kernel requirements: what slimroot's init, its image formats and its VMMs
 * truly need from a kernel, each with the reason. `kernel build` keeps exactly these locked
 * (a user's fragment may turn off anything else slimroot's default fragments chose) and checks
 * them after olddefconfig; the disk formats' rows are the ones `run` checks a kernel's config
 * against (KERNEL_NEEDS in src/disk/identity.ts).
 */
import type { Arch } from "../arch/arch.js";
import { KERNEL_NEEDS } from "../disk/identity.js";

export interface KernelRequirement {
  /** Who needs it: the init, a format, a VMM or a run feature. */
  need: string;
  /** Option names, with the CONFIG_ prefix; built in (=y) in slimroot's kernel. */
  options: readonly string[];
  /** Only on this architecture. */
  arch?: Arch;
}

const optionName = (need: string) => need.split("=")[0]!;

export const KERNEL_REQUIREMENTS: readonly KernelRequirement[] = [
  {
    need: "slimroot's init (an ELF loaded from an initramfs)",
    options: ["CONFIG_BLK_DEV_INITRD", "CONFIG_BINFMT_ELF", "CONFIG_MULTIUSER"],
  },
  {
    need: "the init's mounts (devtmpfs, proc, sysfs, tmpfs, devpts)",
    options: [
      "CONFIG_DEVTMPFS",
      "CONFIG_PROC_FS",
      "CONFIG_SYSFS",
      "CONFIG_SHMEM",
      "CONFIG_TMPFS",
      "CONFIG_TTY",
      "CONFIG_UNIX98_PTYS",
    ],
  },
  {
    need: "the initramfs compressions slimroot writes",
    options: ["CONFIG_RD_GZIP", "CONFIG_RD_XZ", "CONFIG_RD_ZSTD", "CONFIG_RD_LZ4"],
  },
  { need: "xz initramfs archives with the x86 BCJ filter", options: ["CONFIG_XZ_DEC_X86"], arch: "amd64" },
  { need: "the console (the app's output and exit report, kernel panics)", options: ["CONFIG_PRINTK"] },
  {
    need: "the serial console of QEMU and Firecracker",
    options: ["CONFIG_SERIAL_8250", "CONFIG_SERIAL_8250_CONSOLE"],
  },
  {
    need: "the serial console of QEMU virt",
    options: ["CONFIG_ARM_AMBA", "CONFIG_SERIAL_AMBA_PL011", "CONFIG_SERIAL_AMBA_PL011_CONSOLE"],
    arch: "arm64",
  },
  { need: "Firecracker's serial console on arm64", options: ["CONFIG_SERIAL_OF_PLATFORM"], arch: "arm64" },
  {
    need: "virtio over mmio (QEMU microvm/virt, Firecracker; devices on the command line)",
    options: ["CONFIG_VIRTIO", "CONFIG_VIRTIO_MMIO", "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES"],
  },
  { need: "virtio over pci (QEMU pc)", options: ["CONFIG_PCI", "CONFIG_VIRTIO_PCI"] },
  {
    need: "Firecracker's x86_64 minimum (and CPUs without ACPI)",
    options: ["CONFIG_KVM_GUEST", "CONFIG_X86_MPPARSE"],
    arch: "amd64",
  },
  { need: "QEMU's -kernel with an ELF vmlinux (PVH entry)", options: ["CONFIG_PVH"], arch: "amd64" },
  {
    need: "the network the init configures (-p, --tap)",
    options: ["CONFIG_NET", "CONFIG_INET", "CONFIG_UNIX", "CONFIG_NETDEVICES", "CONFIG_VIRTIO_NET"],
  },
  {
    need: "run's graceful stop (Ctrl-Alt-Del on a virtio keyboard)",
    options: ["CONFIG_INPUT", "CONFIG_VIRTIO_INPUT", "CONFIG_VT"],
  },
  {
    need: "Ctrl-Alt-Del on QEMU pc and Firecracker's SendCtrlAltDel",
    options: ["CONFIG_SERIO_I8042", "CONFIG_KEYBOARD_ATKBD"],
    arch: "amd64",
  },
  { need: "--vsock", options: ["CONFIG_VSOCKETS", "CONFIG_VIRTIO_VSOCKETS"] },
  { need: "slimroot trace (fanotify)", options: ["CONFIG_FANOTIFY"] },
  { need: "disk images and --volume", options: ["CONFIG_BLOCK", "CONFIG_BLK_DEV", "CONFIG_VIRTIO_BLK"] },
  { need: "read-only disk roots (an overlay over them)", options: ["CONFIG_OVERLAY_FS"] },
  ...Object.entries(KERNEL_NEEDS).map(([format, needs]) => ({
    need: `${format} disk images`,
    options: needs.map(optionName),
  })),
];

/** Option name -> the need that locks it, for `arch`. */
export function lockedOptions(arch: Arch): Map<string, string> {
  const out = new Map<string, string>();
  for (const r of KERNEL_REQUIREMENTS) {
    if (r.arch && r.arch !== arch) continue;
    for (const o of r.options) if (!out.has(o)) out.set(o, r.need);
  }
  return out;
}
