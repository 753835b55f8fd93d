/** The QEMU launcher: user networking with port forwards, Ctrl-Alt-Del through QMP to stop. */
import type { Arch } from "../arch/arch.js";
import { hasCmdlineDevices, readKernelConfig } from "../kernel/config.js";
import { embeddedApp } from "../kernel/embedded.js";
import type { Transport } from "../kernel/manifest.js";
import { embeddedAppKernel } from "../kernel/resolve.js";
import type { OutputDir } from "../output/dir.js";
import { toolNotFound } from "../util/tools.js";
import {
  bootKernel,
  type Launcher,
  placeInitrd,
  RunFailure,
  type VmRequest,
  writeInitrd,
} from "./launcher.js";
import { chooseMemoryMiB, initrdFootprint, memoryWarning, readKernelRule } from "./memory.js";
import { checkPortsFree } from "./ports.js";
import { chooseAccel, chooseMachine, hostTscKhz, qemuCommand } from "./qemu.js";
import { runConfCpio, runConfText } from "./runconf.js";
import { pressCtrlAltDel } from "./stop.js";

/** The kernel, initrd and ACPI choice of a VM booting an initramfs image. */
async function initrdBoot(req: VmRequest, arch: Arch, transport: Transport, out: OutputDir, scratch: string) {
  const bk = await bootKernel(req, arch, transport, scratch);
  const { initrd, memMiB, notes } = await writeInitrd(req, bk, true, out, arch);
  // A kernel that takes its virtio-mmio devices from the command line runs microvm without
  // ACPI (as Firecracker gives them); one with a modular virtio_mmio needs ACPI's tables.
  const config = bk.config ? await readKernelConfig(bk.config) : undefined;
  return { kernel: bk.kernel, initrd, memMiB, acpi: !(config && hasCmdlineDevices(config)), notes };
}

/**
 * The longest slimroot.conf= value we put on the kernel command line: the kernel keeps 2048
 * bytes of it on x86 and arm64, and QEMU and our own arguments take the rest.
 */
const MAX_CMDLINE_CONF = 1536;

/**
 * A kernel with the app built in (kernel build --embed): the run settings (with the disk
 * records of --volume and --read-only) go on the kernel command line as slimroot.conf=BASE64
 * (docs/run.md), and microvm runs without ACPI (slimroot's kernel takes its devices from the
 * command line). The report key cannot go there (the app reads /proc/cmdline): it comes in a
 * small initrd of its own, which the kernel unpacks over its built-in one. The memory is sized
 * from the built-in image, as for an initramfs; a kernel file with no app in it is refused.
 */
async function embeddedBoot(req: VmRequest, arch: Arch, out: OutputDir, scratch: string) {
  if (req.kernel !== undefined || req.modules !== undefined)
    throw new RunFailure(
      `${req.image} is a kernel with its app built in: --kernel and --modules do not apply`,
    );
  const app = await embeddedApp(req.image, scratch);
  if (!app) throw new RunFailure(`${req.image}: not a kernel image`);
  const conf = runConfText({
    network: true,
    env: req.env,
    ...(req.args ? { args: req.args } : {}),
    ...(req.trace ? { trace: true } : {}),
    disks: req.diskBoot?.records ?? [],
  });
  const encoded = Buffer.from(conf.replace(/^#.*\n/gm, ""))
    .toString("base64")
    .replace(/=+$/, "");
  if (encoded.length > MAX_CMDLINE_CONF)
    throw new RunFailure(
      `run settings too long for the kernel command line (${encoded.length} bytes of base64, at most ${MAX_CMDLINE_CONF}): use fewer -e/arguments or the initramfs form`,
    );
  // The kernel file holds the compressed image while it unpacks, as an initrd would.
  const footprint = await initrdFootprint([app.initramfs], req.image);
  const rule = await readKernelRule(req.image, app.kind, { embedded: true });
  const memMiB = chooseMemoryMiB(footprint, arch, req.memMiB, req.image, rule);
  const warning = memoryWarning(rule, req.image, memMiB, req.memMiB);
  const initrd = req.reportKey
    ? (await placeInitrd([await runConfCpio(undefined, req.reportKey)], out)).initrd
    : undefined;
  return {
    kernel: req.image,
    ...(initrd ? { initrd } : {}),
    memMiB,
    acpi: false,
    extraCmdline: `slimroot.conf=${encoded}`,
    notes: warning ? [warning] : [],
  };
}

export const qemuLauncher: Launcher = {
  async prepare(req, arch, out, scratch) {
    const firecrackerOnly = [
      req.tap && "--tap",
      req.guestIp && "--guest-ip",
      req.gateway && "--gateway",
      req.vsockCid !== undefined && "--vsock",
    ].filter(Boolean);
    if (firecrackerOnly.length)
      throw new RunFailure(
        `${firecrackerOnly.join(", ")}: only with --vmm firecracker (QEMU uses -p forwards)`,
      );
    const accel = chooseAccel(arch);
    const tscKhz = arch === "amd64" && accel === "tcg" ? hostTscKhz() : undefined;
    const machine = chooseMachine(arch, accel, tscKhz);
    // Made by QEMU when it starts.
    const qmpSocket = out.file("qmp.sock");
    const { notes, ...boot } = (await embeddedAppKernel(req.image))
      ? await embeddedBoot(req, arch, out, scratch)
      : await initrdBoot(req, arch, machine === "pc" ? "pci" : "mmio", out, scratch);
    const command = qemuCommand({
      arch,
      machine,
      accel,
      ...boot,
      cpus: req.cpus,
      forwards: req.forwards,
      qmpSocket,
      drives: (req.disks ?? []).map((d) => ({ file: d.path, readOnly: d.readOnly })),
      ...(tscKhz ? { tscKhz } : {}),
    });
    return {
      vmmName: "QEMU",
      command,
      notes,
      async preflight() {
        await checkPortsFree(req.forwards).catch((err: Error) => {
          throw new RunFailure(err.message);
        });
      },
      requestStop: (deadline, exited) => pressCtrlAltDel(qmpSocket, machine, deadline, exited),
      notFound: toolNotFound(command[0]!),
    };
  },
};
