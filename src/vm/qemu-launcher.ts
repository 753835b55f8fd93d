/** The QEMU launcher: a boot plan as QEMU's argv; user networking with port forwards, Ctrl-Alt-Del through QMP to stop. */
import { toolNotFound } from "../util/tools.js";
import { type Launcher, RunFailure, writeInitrd } from "./launcher.js";
import { checkPortsFree } from "./ports.js";
import { qemuCommand } from "./qemu.js";
import { pressCtrlAltDel } from "./stop.js";

export const qemuLauncher: Launcher = {
  async render(plan, out) {
    const qemu = plan.qemu;
    if (!qemu || plan.network.kind !== "user") throw new Error("QEMU launcher: not a QEMU plan");
    const forwards = plan.network.forwards;
    // Made by QEMU when it starts.
    const qmpSocket = out.file("qmp.sock");
    const command = qemuCommand({
      arch: plan.arch,
      ...qemu,
      kernel: plan.kernel.path,
      initrd: await writeInitrd(plan, out),
      cmdline: plan.cmdline,
      memMiB: plan.memory.mib,
      cpus: plan.cpus,
      forwards,
      qmpSocket,
      drives: plan.disks.map((d) => ({ file: d.path, readOnly: d.readOnly })),
    });
    return {
      vmmName: "QEMU",
      command,
      async preflight() {
        await checkPortsFree(forwards).catch((err: Error) => {
          throw new RunFailure(err.message);
        });
      },
      requestStop: (deadline, exited) => pressCtrlAltDel(qmpSocket, qemu.machine, deadline, exited),
      notFound: toolNotFound(command[0]!),
    };
  },
};
