import { Transform, type TransformCallback } from "node:stream";
import type { GuestReport } from "./report.js";

/** Longest partial line kept while looking for the exit report. */
const MAX_LINE = 4096;

/**
 * The guest's serial console on its way to our stdout: bytes pass through as they come,
 * with the tty's CRLF line ends turned back into LF, and every line goes to the boot's
 * `GuestReport` (report.ts), which accepts only the init's report, not the app's look-alikes.
 */
export class ConsoleWatcher extends Transform {
  private line = "";
  private pendingCR = false;

  constructor(
    readonly report: GuestReport,
    private readonly onExit: (code: number) => void = () => {},
  ) {
    super();
  }

  /** The app's exit status once the init has reported it. */
  get exitCode(): number | undefined {
    return this.report.exitCode;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let text = (this.pendingCR ? "\r" : "") + chunk.toString("latin1");
    this.pendingCR = text.endsWith("\r");
    if (this.pendingCR) text = text.slice(0, -1);
    text = text.replace(/\r\n/g, "\n");
    this.scan(text);
    cb(null, Buffer.from(text, "latin1"));
  }

  override _flush(cb: TransformCallback): void {
    if (this.pendingCR) this.push("\r");
    this.check(this.line);
    cb();
  }

  private scan(text: string): void {
    const parts = (this.line + text).split("\n");
    this.line = parts.pop()!.slice(-MAX_LINE);
    for (const l of parts) this.check(l);
  }

  private check(line: string): void {
    if (this.report.line(line) && this.report.exitCode !== undefined) this.onExit(this.report.exitCode);
  }
}
