/** The QEMU launcher: a boot plan as QEMU's argv; user networking with port forwards, Ctrl-Alt-Del through QMP to stop. */
import { shellQuote } from "../util/shell.js";
import { toolNotFound } from "../util/tools.js";
import { ControlChannel, resumeRequest } from "./control.js";
import { type Launcher, type ResumeSteps, RunFailure, writeInitrd } from "./launcher.js";
import { checkPortsFree, hostfwd, type PortForward } from "./ports.js";
import { qemuCommand } from "./qemu.js";
import { ignoreSharedRam, Qmp } from "./qmp.js";
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
      // A resume's forwards are added once the guest runs (resumeGuest).
      forwards: resume ? [] : forwards,
      qmpSocket,
      drives: plan.disks.map((d) => ({ file: d.path, readOnly: d.readOnly })),
      ...(controlSocket ? { controlSocket } : {}),
      ...(plan.ram ? { ramFile: plan.ram } : {}),
      // QEMU starts while run checks the snapshot's files; resumeGuest gives it the state after.
      ...(resume ? { incoming: "defer" } : {}),
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
      ...(resume && controlSocket
        ? {
            started: (steps) =>
              resumeGuest(
                {
                  qmpSocket,
                  channel: controlSocket,
                  snapshot: resume.snapshot,
                  forwards,
                  ramFile: Boolean(plan.ram),
                },
                steps,
              ),
          }
        : {}),
    };
  },
};

/** A resume's QMP and control sockets, its snapshot file and this run's forwards. */
interface ResumeVm {
  qmpSocket: string;
  channel: string;
  snapshot: string;
  forwards: readonly PortForward[];
  /** The guest's RAM is the snapshot's RAM file: the stream holds none. */
  ramFile: boolean;
}

/** QEMU's sockets appear within a few ms of each other: asked often, a resume does not wait on the asking. */
const POLL_MS = 5;

/**
 * QEMU was started with `-incoming defer` while run checked the snapshot's files (resume.ts).
 * Once they pass, QEMU reads the state (the snapshot file is zstd frames behind a skippable
 * header frame, artifact/snapshot.ts; the RAM is the RAM file, mapped private), and the guest init makes it a machine of its own (fresh
 * entropy, the host's clock) before its processes continue (init/control.c). Only then are
 * this run's ports forwarded: a connection QEMU's user network accepts while the guest is not
 * running is lost to the guest and waits seconds on the forwarder's retransmission, where a
 * refused one is retried at once by any client.
 */
async function resumeGuest(vm: ResumeVm, { checked, mark, standby }: ResumeSteps): Promise<void> {
  const qmp = await Qmp.connect(vm.qmpSocket, RESUME_ANSWER_MS, POLL_MS);
  mark("vmmUp");
  let control: ControlChannel | undefined;
  try {
    await checked;
    if (vm.ramFile) await ignoreSharedRam(qmp);
    await qmp.execute("migrate-incoming", {
      uri: `exec:${shellQuote(["zstd", "-dcq", "--", vm.snapshot])}`,
    });
    const deadline = Date.now() + RESUME_ANSWER_MS;
    let status: string | undefined;
    for (;;) {
      status = ((await qmp.execute("query-status")) as { status?: string }).status;
      if (status === "running" || status === "paused") break;
      if (status !== "inmigrate" && status !== "prelaunch")
        throw new RunFailure(`the snapshot did not resume: QEMU is ${status ?? "in an unknown state"}`);
      if (Date.now() > deadline) throw new RunFailure("the snapshot did not load in time");
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    mark("loaded");
    // A standby waits here, everything checked and loaded: what is left is the guest's own part.
    // (Even a guest saved running would not let the app on before the init's resume request.)
    if (standby) {
      await standby();
      mark("go");
    }
    // The state was saved paused (snapshot/take.ts stops the VM first): loaded, it waits for us.
    if (status === "paused") await qmp.execute("cont");
    // Connected only now: the loaded state holds the port's "host connected" flag as it was
    // at the snapshot (closed), and a connection made before the load would be overridden by
    // it, so the guest's answer would find the host side closed and be dropped.
    control = await ControlChannel.connect(vm.channel, RESUME_ANSWER_MS, POLL_MS);
    await control.request(resumeRequest(), "resumed", RESUME_ANSWER_MS);
    for (const f of vm.forwards) {
      const rule = hostfwd(f).replace(/^hostfwd=/, "");
      // HMP's hostfwd_add (QMP has none) answers nothing when it worked, its error otherwise.
      const said = (await qmp.execute("human-monitor-command", {
        "command-line": `hostfwd_add n0 ${rule}`,
      })) as string;
      if (said.trim()) throw new RunFailure(`-p ${f.hostAddr}:${f.hostPort}:${f.guestPort}: ${said.trim()}`);
    }
    mark("resumed");
  } finally {
    qmp.close();
    control?.close();
  }
}
