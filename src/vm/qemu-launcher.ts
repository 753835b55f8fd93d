/** The QEMU launcher: a boot plan as QEMU's argv; user networking with port forwards, Ctrl-Alt-Del through QMP to stop. */
import { shellQuote } from "../util/shell.js";
import { toolNotFound } from "../util/tools.js";
import { ControlChannel, resumeRequest } from "./control.js";
import { type Launcher, RunFailure, writeInitrd } from "./launcher.js";
import { checkPortsFree } from "./ports.js";
import { qemuCommand } from "./qemu.js";
import { Qmp } from "./qmp.js";
import { pressCtrlAltDel } from "./stop.js";

/** How long a resumed guest's init gets to answer: loading the state comes first. */
const RESUME_ANSWER_MS = 60_000;

export const qemuLauncher: Launcher = {
  async render(plan, out) {
    const qemu = plan.qemu;
    if (!qemu || plan.network.kind !== "user") throw new Error("QEMU launcher: not a QEMU plan");
    const forwards = plan.network.forwards;
    // Made by QEMU when it starts.
    const qmpSocket = out.file("qmp.sock");
    const controlSocket = plan.control ? out.file("control.sock") : undefined;
    const resume = plan.resume;
    const command = qemuCommand({
      arch: plan.arch,
      ...qemu,
      kernel: plan.kernel.path,
      // A resumed VM's initrd was unpacked at its first boot: its RAM holds it.
      ...(resume ? {} : { initrd: await writeInitrd(plan, out) }),
      cmdline: plan.cmdline,
      memMiB: plan.memory.mib,
      cpus: plan.cpus,
      forwards,
      qmpSocket,
      drives: plan.disks.map((d) => ({ file: d.path, readOnly: d.readOnly })),
      ...(controlSocket ? { controlSocket } : {}),
      // The snapshot file is zstd frames behind a skippable header frame (artifact/snapshot.ts).
      ...(resume ? { incoming: `exec:${shellQuote(["zstd", "-dcq", "--", resume.snapshot])}` } : {}),
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
      ...(controlSocket ? { control: { qmpSocket, channel: controlSocket } } : {}),
      ...(resume && controlSocket ? { started: () => resumeGuest(qmpSocket, controlSocket) } : {}),
    };
  },
};

/**
 * Once QEMU has loaded the saved state and runs it, the guest init makes it a machine of its
 * own (fresh entropy, the host's clock) before its processes continue (init/control.c).
 */
async function resumeGuest(qmpSocket: string, channel: string): Promise<void> {
  const qmp = await Qmp.connect(qmpSocket, RESUME_ANSWER_MS);
  try {
    const deadline = Date.now() + RESUME_ANSWER_MS;
    for (;;) {
      const st = (await qmp.execute("query-status")) as { status?: string };
      if (st.status === "running") break;
      // The state was saved paused (snapshot/take.ts stops the VM first): loaded, it waits for us.
      if (st.status === "paused") {
        await qmp.execute("cont");
        break;
      }
      if (st.status !== "inmigrate" && st.status !== "prelaunch")
        throw new RunFailure(`the snapshot did not resume: QEMU is ${st.status ?? "in an unknown state"}`);
      if (Date.now() > deadline) throw new RunFailure("the snapshot did not load in time");
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    qmp.close();
  }
  const ctl = await ControlChannel.connect(channel);
  try {
    await ctl.request(resumeRequest(), "resumed", RESUME_ANSWER_MS);
  } finally {
    ctl.close();
  }
}
