import { Writable } from "node:stream";

const TRACE = "SLIMROOT_TRACE ";
const LOST = /^SLIMROOT_TRACE_LOST (\d+)$/;
const EXIT = /SLIMROOT_EXIT=\d+$/;
const TAIL_LINES = 20;
/** A kernel message ("[    1.94] reboot: ..."): it tells little about why an app failed. */
export const KERNEL_LINE = /^\[\s*\d+\.\d+\]/;

/** Undoes the init's escaping of a traced path: `\\`, `\n`, `\xHH` (init/trace.c). */
export function decodeTracePath(text: string): string {
  const bytes: number[] = [];
  const raw = Buffer.from(text, "latin1"); // the console watcher passes bytes as latin1
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

/**
 * The guest console of a traced (or probed) run: collects the init's SLIMROOT_TRACE lines,
 * keeps the last few other lines for error messages, and copies the console to `echo` when
 * given (--verbose).
 */
export class TraceCollector extends Writable {
  readonly paths: string[] = [];
  lost = 0;
  /** The init's exit report was seen: the trace (if any) is complete. */
  sawExit = false;
  readonly tail: string[] = [];
  private partial = "";

  constructor(private readonly echo?: NodeJS.WritableStream) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.echo?.write(chunk);
    const lines = (this.partial + chunk.toString("latin1")).split("\n");
    this.partial = lines.pop()!;
    for (const l of lines) this.line(l.replace(/\r+$/, ""));
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.partial) this.line(this.partial);
    cb();
  }

  private line(l: string): void {
    if (l.startsWith(TRACE)) {
      this.paths.push(decodeTracePath(l.slice(TRACE.length)));
      return;
    }
    const lost = LOST.exec(l);
    if (lost) {
      this.lost += Number(lost[1]);
      return;
    }
    if (EXIT.test(l)) this.sawExit = true;
    if (!l.trim() || KERNEL_LINE.test(l)) return;
    this.tail.push(l);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
  }

  /** The last line the app (or the init) printed, for error messages. */
  lastLine(): string | undefined {
    return this.tail.filter((l) => !EXIT.test(l)).pop();
  }
}
