/**
 * The init's report on the guest console, parsed in one place for every reader: `run`'s
 * console watcher, trace sessions (through `run`) and bench (through `slimroot run`'s output).
 *
 * The app shares the console, so anything it prints could look like the report. The report
 * therefore opens with a per-boot key the app cannot know (init/README.md, "Exit report"):
 *
 *     <what the app left on its last line>SLIMROOT_REPORT <key>
 *     SLIMROOT_TRACE <path>          (record mode, one per path)
 *     SLIMROOT_TRACE_RECORDER <how>  (record mode with the syscall recorder: seccomp or ptrace)
 *     SLIMROOT_TRACE_LOST <n>        (record mode, when the init's table was full)
 *     SLIMROOT_TIME <what> <usecs>   (the init's milestones on its monotonic clock: init, app, exit)
 *     SLIMROOT_EXIT=<n>
 *
 * The key is made here for each boot and travels in the run.conf archive as a file the init
 * reads and deletes before anything else runs; the init prints it only after every other
 * process is dead. Lines before the key are the app's (or the kernel's) and count for nothing.
 */
import { randomBytes } from "node:crypto";
import { SLIMROOT_DIR } from "../guest/layout.js";
import { UserError } from "../util/errors.js";

/** Where the key is in the guest's initramfs until the init has read (and deleted) it. */
export const REPORT_KEY_PATH = `${SLIMROOT_DIR}/report-key`;
/** Bench hands `slimroot run` a key of its own here, to read the report from run's output. */
export const REPORT_KEY_ENV = "SLIMROOT_REPORT_KEY";

const OPEN = "SLIMROOT_REPORT ";
const TRACE = "SLIMROOT_TRACE ";
const LOST = /^SLIMROOT_TRACE_LOST (\d+)$/;
const RECORDER = /^SLIMROOT_TRACE_RECORDER (seccomp|ptrace)$/;
const EXIT = /^SLIMROOT_EXIT=(\d+)$/;
const TIME = /^SLIMROOT_TIME (\w+) (\d+)$/;
const KEY = /^[0-9a-f]{32,128}$/;
/** A line shaped like part of a report (the init's, or an app's look-alike): not the app's words. */
export const REPORT_LINE = /^SLIMROOT_T(RACE|IME )|SLIMROOT_(REPORT [0-9a-f]+|EXIT=\d+)$/;

/** A fresh key: 128 random bits in hex (what the init's key file holds). */
export function newReportKey(): string {
  return randomBytes(16).toString("hex");
}

/** The key in SLIMROOT_REPORT_KEY when set (checked), else undefined. */
export function reportKeyFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const key = env[REPORT_KEY_ENV];
  if (key === undefined) return undefined;
  if (!KEY.test(key)) throw new UserError(`${REPORT_KEY_ENV}: expected 32 to 128 lowercase hex digits`);
  return key;
}

/** Undoes the init's escaping of a traced path: `\\`, `\n`, `\xHH` (init/trace.c). */
export function decodeTracePath(text: string): string {
  const bytes: number[] = [];
  const raw = Buffer.from(text, "latin1"); // the console passes bytes as latin1
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === 0x5c && raw[i + 1] === 0x5c) {
      bytes.push(0x5c);
      i++;
    } else if (c === 0x5c && raw[i + 1] === 0x6e) {
      bytes.push(0x0a);
      i++;
    } else if (c === 0x5c && raw[i + 1] === 0x78 && /^[0-9a-f]{2}$/.test(text.slice(i + 2, i + 4))) {
      bytes.push(Number.parseInt(text.slice(i + 2, i + 4), 16));
      i += 3;
    } else bytes.push(c);
  }
  return Buffer.from(bytes).toString("utf8");
}

/** The init's report of one boot, fed the console line by line. */
export class GuestReport {
  /** The report opened with this boot's key: what follows is the init's. */
  opened = false;
  /** The app's exit status (or the init's failure status), once reported. */
  exitCode: number | undefined;
  /** Guest paths the init recorded (record mode), in the order first opened. */
  readonly traced: string[] = [];
  /** Events the init could not record. */
  lost = 0;
  /** How the init's syscall recorder stopped the app ("seccomp", "ptrace"); undefined: it did not record lookups. */
  recorder: string | undefined;
  /** The init's milestones (init, app, exit): µs on its monotonic clock (timeline.ts). */
  readonly times: Record<string, number> = {};

  constructor(readonly key: string = newReportKey()) {
    if (!KEY.test(key)) throw new Error("a report key is 32 to 128 lowercase hex digits");
  }

  /** One console line (without its LF; trailing CRs are ignored). True when it was the init's report. */
  line(text: string): boolean {
    if (this.exitCode !== undefined) return false;
    const l = text.replace(/\r+$/, "");
    if (!this.opened) {
      // At the end of the line: the init prints after whatever the app left on it.
      this.opened = l.endsWith(OPEN + this.key);
      return this.opened;
    }
    if (l.startsWith(TRACE)) {
      this.traced.push(decodeTracePath(l.slice(TRACE.length)));
      return true;
    }
    const rec = RECORDER.exec(l);
    if (rec) {
      this.recorder = rec[1];
      return true;
    }
    const time = TIME.exec(l);
    if (time) {
      this.times[time[1]!] = Number(time[2]);
      return true;
    }
    const lost = LOST.exec(l);
    if (lost) {
      this.lost += Number(lost[1]);
      return true;
    }
    const exit = EXIT.exec(l);
    if (exit) this.exitCode = Math.min(255, Number(exit[1]));
    return exit !== null; // else a kernel line in between
  }

  /** Every line of `text` (a whole console), for readers that hold it all. */
  scan(text: string): this {
    for (const l of text.split("\n")) this.line(l);
    return this;
  }
}
