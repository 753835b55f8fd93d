import { connect, type Socket } from "node:net";

/**
 * A minimal QEMU Machine Protocol client over a unix socket: one command at a time, events
 * ignored. Enough to press keys and ask about devices.
 */
export class Qmp {
  private buf = "";
  private waiting: ((msg: Record<string, unknown>) => void) | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(private readonly sock: Socket) {
    sock.on("data", (d: Buffer) => {
      this.buf += d.toString("utf8");
      for (let nl = this.buf.indexOf("\n"); nl >= 0; nl = this.buf.indexOf("\n")) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        let msg: Record<string, unknown>;
        try {
          msg = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        if ("event" in msg) continue;
        const w = this.waiting;
        this.waiting = undefined;
        w?.(msg);
      }
    });
    sock.on("error", () => {});
    sock.on("close", () => {
      const w = this.waiting;
      this.waiting = undefined;
      w?.({ error: { desc: "QMP connection closed" } });
    });
  }

  /** Connects, retrying until QEMU has created the socket or `timeoutMs` passes. */
  static connect(path: string, timeoutMs = 5000, stepMs = 50): Promise<Qmp> {
    return retrying(timeoutMs, stepMs, async () => {
      const qmp = new Qmp(await connectUnix(path));
      await qmp.next(); // the greeting
      await qmp.execute("qmp_capabilities");
      return qmp;
    });
  }

  private next(): Promise<Record<string, unknown>> {
    return new Promise((resolve) => {
      this.waiting = resolve;
    });
  }

  /** Runs one command; resolves with its `return` value, rejects with QEMU's error text. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const run = async () => {
      const reply = this.next();
      this.sock.write(
        `${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`,
      );
      const msg = await reply;
      if ("error" in msg) {
        const e = msg.error as { desc?: string };
        throw new Error(`QMP ${command}: ${e.desc ?? JSON.stringify(e)}`);
      }
      return msg.return;
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => {});
    return p;
  }

  close(): void {
    this.sock.destroy();
  }
}

/** A connection to unix socket `path`. */
export function connectUnix(path: string): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const s = connect(path);
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

/** `fn` until it resolves, every `stepMs`, for at most `timeoutMs` (QEMU makes its sockets when it gets there). */
export async function retrying<T>(timeoutMs: number, stepMs: number, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, stepMs));
    }
  }
}

/**
 * Migration leaves out RAM that is a shared file (`x-ignore-shared`): a snapshot's RAM is its
 * RAM file (docs/snapshot.md). Set on both sides: QEMU refuses a stream whose capability
 * differs from the incoming side's.
 */
export async function ignoreSharedRam(qmp: Qmp): Promise<void> {
  await qmp.execute("migrate-set-capabilities", {
    capabilities: [{ capability: "x-ignore-shared", state: true }],
  });
}
