/**
 * The snapshot control channel, host side: a virtio-serial port (QEMU `virtserialport` on a
 * unix socket chardev) that the guest init opens when run.conf has a `control` record
 * (init/control.c). Requests are lines; each gets one line back:
 *
 *   freeze             -> frozen K  every guest process but the init stopped (SIGSTOP); K: KiB of RAM in use
 *   resume S N HEX     -> resumed   pool reseeded from virtio-rng and HEX, CRNG reseeded,
 *                                   clock set to S.N (the host's), then SIGCONT for all
 */
import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { connectUnix, retrying } from "./qmp.js";

/** The kernel module of the port's driver (built into slimroot's kernel; a module in Debian's). */
export const CONTROL_MODULE = "virtio_console";
/** The port's name: the init finds it in /sys/class/virtio-ports (its vportNpM follows the device order). */
export const CONTROL_PORT_NAME = "org.slimroot.control";

export class ControlChannel {
  private buf = "";
  private waiting: ((line: string | undefined) => void) | undefined;
  private readonly lines: string[] = [];

  private constructor(private readonly sock: Socket) {
    sock.on("data", (d: Buffer) => {
      this.buf += d.toString("latin1");
      for (let nl = this.buf.indexOf("\n"); nl >= 0; nl = this.buf.indexOf("\n")) {
        this.lines.push(this.buf.slice(0, nl));
        this.buf = this.buf.slice(nl + 1);
      }
      this.deliver();
    });
    sock.on("error", () => {});
    sock.on("close", () => {
      const w = this.waiting;
      this.waiting = undefined;
      w?.(undefined);
    });
  }

  private deliver(): void {
    if (this.waiting && this.lines.length) {
      const w = this.waiting;
      this.waiting = undefined;
      w(this.lines.shift());
    }
  }

  /** Connects to QEMU's end of the channel, retrying until it exists or `timeoutMs` passes. */
  static async connect(path: string, timeoutMs = 10_000, stepMs = 20): Promise<ControlChannel> {
    return new ControlChannel(await retrying(timeoutMs, stepMs, () => connectUnix(path)));
  }

  /** Sends one request and waits for a reply that is `expect`, or starts with it and a space (returns the rest); else throws. */
  async request(line: string, expect: string, timeoutMs: number): Promise<string> {
    const reply = new Promise<string | undefined>((resolve) => {
      this.waiting = resolve;
      this.deliver();
    });
    this.sock.write(`${line}\n`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((r) => {
      timer = setTimeout(() => r("timeout"), timeoutMs);
    });
    const got = await Promise.race([reply, timeout]);
    clearTimeout(timer);
    const verb = line.split(" ")[0];
    if (got === "timeout")
      throw new Error(
        `the guest init did not answer "${verb}" within ${timeoutMs / 1000} s (an image built before snapshots?)`,
      );
    if (got === expect) return "";
    if (got?.startsWith(`${expect} `)) return got.slice(expect.length + 1);
    throw new Error(`the guest init answered "${verb}" with ${JSON.stringify(got ?? "nothing")}`);
  }

  close(): void {
    this.sock.destroy();
  }
}

/** The resume request: the host's wall clock now and 32 fresh random bytes. */
export function resumeRequest(nowNs: bigint = BigInt(Date.now()) * 1_000_000n): string {
  const sec = nowNs / 1_000_000_000n;
  const nsec = nowNs % 1_000_000_000n;
  return `resume ${sec} ${nsec} ${randomBytes(32).toString("hex")}`;
}
