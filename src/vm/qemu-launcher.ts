/** The QEMU launcher: user networking with port forwards, Ctrl-Alt-Del through QMP to stop. */
import { join } from "node:path";
import { bootKernel, type Launcher, RunFailure, writeInitrd } from "./launcher.js";
import { checkPortsFree } from "./ports.js";
import { chooseAccel, chooseMachine, hostTscKhz, qemuCommand, qemuPackage } from "./qemu.js";
import { pressCtrlAltDel } from "./stop.js";

export const qemuLauncher: Launcher = {
  async prepare(req, arch, dir, scratch) {
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
    const bk = await bootKernel(req, arch, machine === "pc" ? "pci" : "mmio", scratch);
    const { initrd, memMiB } = await writeInitrd(req, bk, true, dir, arch);
    const qmpSocket = join(dir, "qmp.sock");
    const command = qemuCommand({
      arch,
      machine,
      accel,
      kernel: bk.kernel,
      initrd,
      memMiB,
      cpus: req.cpus,
      forwards: req.forwards,
      qmpSocket,
      drives: (req.disks ?? []).map((d) => ({ file: d.path, readOnly: d.readOnly })),
      ...(tscKhz ? { tscKhz } : {}),
    });
    return {
      vmmName: "QEMU",
      command,
      notes: [],
      async preflight() {
        await checkPortsFree(req.forwards).catch((err: Error) => {
          throw new RunFailure(err.message);
        });
      },
      requestStop: (deadline, exited) => pressCtrlAltDel(qmpSocket, machine, deadline, exited),
      notFound: `${command[0]} not found: install QEMU (apt-get install ${qemuPackage(arch)})`,
    };
  },
};
