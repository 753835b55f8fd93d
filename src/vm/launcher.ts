/**
 * A launcher renders a boot plan (plan.ts) for its VMM: QEMU (qemu-launcher.ts) or
 * Firecracker (firecracker-launcher.ts). It writes the plan's files and builds the command;
 * it decides nothing the plan has not. run.ts does what is the same for both: it reads the
 * facts, makes the plan, asks the launcher to render it, then starts the command, watches
 * the console for the init's exit report and stops the VM.
 */
import type { OutputDir } from "../output/dir.js";
import { initCpio } from "./disks.js";
import { joinInitrd } from "./initrd.js";
import type { BootPlan } from "./plan.js";
import { runConfCpio } from "./runconf.js";

export type { Disk, DiskBoot } from "./disks.js";
export { RunFailure } from "./failure.js";
export { VMMS, type Vmm } from "./plan.js";

/** What run.ts gives a resume's `started`. */
export interface ResumeSteps {
  /** The checks a resume must pass (resume.ts checkResume), run while the VMM starts: nothing is loaded before they pass. */
  checked: Promise<void>;
  mark: (step: ResumeStep) => void;
  /**
   * `run --standby`: awaited once the state is loaded, the guest paused, before it continues;
   * resolves when the resume may go on (standby.ts: its signal came).
   */
  standby?: () => Promise<void>;
}

/** A resume's steps as they pass (timeline.ts ResumeMarks): "go" only for a standby. */
export type ResumeStep = "vmmUp" | "loaded" | "go" | "resumed";

/** A prepared VM: its files are written, the command is ready to start. */
export interface Launch {
  /** For messages: "QEMU", "Firecracker". */
  vmmName: string;
  /** [binary, ...arguments]. */
  command: string[];
  /** Checks the host can run it now (ports free, KVM, the binary): throws RunFailure. */
  preflight(): Promise<void>;
  /**
   * Asks the guest to stop its app gracefully; run.ts kills the VMM once the grace period
   * is over. Absent when the VMM has no way to tell the guest: the VMM is killed at once.
   */
  requestStop?: (deadline: number, exited: () => boolean) => Promise<void>;
  /** The one line for a VMM binary that is not installed. */
  notFound: string;
  /** A file the VMM logs its errors to (instead of stderr): its last line explains a failure. */
  log?: string;
  /** QEMU with the snapshot control channel: its QMP socket and the channel's socket (control.ts). */
  control?: { qmpSocket: string; channel: string };
  /**
   * Run once the VMM has started (a resume: the state loaded once `checked` resolves, then the
   * guest made a machine of its own); its failure ends the VM. `mark` records its steps as they
   * pass (a resume's timeline, timeline.ts).
   */
  started?: (resume: ResumeSteps) => Promise<void>;
}

export interface Launcher {
  /** Writes the plan's files into `out` (renamed into place together once it returns) and builds the command. */
  render(plan: BootPlan, out: OutputDir): Promise<Launch>;
}

/**
 * The plan's initrd parts joined into `out`/initrd through a temp name, so a `--dry-run -o
 * DIR` never holds half an initrd.
 */
export async function writeInitrd(plan: BootPlan, out: OutputDir): Promise<string> {
  const parts: (string | Buffer)[] = [];
  for (const p of plan.initrd) {
    if (p.kind === "image" || p.kind === "modules") parts.push(p.path);
    else if (p.kind === "init") parts.push(await initCpio(plan.arch));
    else parts.push(await runConfCpio(plan.runConf, plan.reportKey));
  }
  const initrd = out.file("initrd");
  await out.write([{ target: initrd, mode: 0o600, write: (tmp) => joinInitrd(parts, tmp) }]);
  return initrd;
}
