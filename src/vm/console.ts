import { Transform, type TransformCallback } from "node:stream";

const EXIT_RE = /SLIMROOT_EXIT=(\d+)$/;
/** Longest partial line kept while looking for the exit report. */
const MAX_LINE = 4096;

/**
 * The guest's serial console on its way to our stdout: bytes pass through as they come,
 * with the tty's CRLF line ends turned back into LF, and every line is checked for the
 * init's `SLIMROOT_EXIT=<n>` report. The init prints it after whatever the app left on
 * the line, so it is matched at the end of a line, not the start.
 */
export class ConsoleWatcher extends Transform {
  /** The app's exit status once the init has reported it. */
  exitCode: number | undefined;
  private line = "";
  private pendingCR = false;
  private readonly onExit: (code: number) => void;

  constructor(onExit: (code: number) => void = () => {}) {
    super();
    this.onExit = onExit;
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
    if (this.exitCode !== undefined) return;
    const m = EXIT_RE.exec(line.replace(/\r+$/, ""));
    if (!m) return;
    this.exitCode = Math.min(255, Number(m[1]));
    this.onExit(this.exitCode);
  }
}
