import { Writable } from "node:stream";
import { REPORT_LINE } from "../vm/report.js";

const TAIL_LINES = 20;
/** A kernel message ("[    1.94] reboot: ..."): it tells little about why an app failed. */
export const KERNEL_LINE = /^\[\s*\d+\.\d+\]/;

/**
 * The guest console of a traced (or probed) run, for error messages: keeps the last few
 * lines the app (or the init) printed, and copies the console to `echo` when given
 * (--verbose). The init's report itself is read by run (src/vm/report.ts).
 */
export class TraceCollector extends Writable {
  readonly tail: string[] = [];
  private partial = "";

  constructor(private readonly echo?: NodeJS.WritableStream) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.echo?.write(chunk);
    const lines = (this.partial + chunk.toString("latin1")).split("\n");
    this.partial = lines.pop()!.slice(-4096);
    for (const l of lines) this.line(l.replace(/\r+$/, ""));
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.partial) this.line(this.partial);
    cb();
  }

  private line(l: string): void {
    if (!l.trim() || KERNEL_LINE.test(l) || REPORT_LINE.test(l)) return;
    this.tail.push(l);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
  }

  /** The last line the app (or the init) printed, for error messages. */
  lastLine(): string | undefined {
    return this.tail.at(-1);
  }
}
