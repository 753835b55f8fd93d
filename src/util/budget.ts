import { statfsSync } from "node:fs";
import { EnvironmentError, UserError } from "./errors.js";

/**
 * The one budget every byte count, entry count and depth read from an input is checked
 * against, while it is read and before the bytes are spent: a 5 KiB tar that declares a 1 TiB
 * sparse file, a path thousands of directories deep, a `list:` of a million lines or a text
 * file with no newline are refused in one line naming the limit and its variable, instead of
 * filling TMPDIR, the stack or V8's string limit. Every limit is an environment variable, as
 * the registry limits are (README "Input limits").
 */
export interface Limits {
  /** Sum of the regular file bodies of the image being built (the expanded size). */
  bytes: number;
  /** Entries read from all the layers (tar members, host paths, list lines, cpio records). */
  entries: number;
  /** Directories in one path ("a/b/c" is 3 deep). */
  depth: number;
  /** A file read whole into memory: a text input (list, fragment, profile, .why), a manifest, a kernel to unpack. */
  read: number;
  /** One line of a text input. */
  line: number;
}

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** Each limit: its variable and default. README "Input limits" is this table. */
export const LIMITS: Record<keyof Limits, { env: string; fallback: number }> = {
  bytes: { env: "SLIMROOT_MAX_BYTES", fallback: 32 * GiB },
  entries: { env: "SLIMROOT_MAX_ENTRIES", fallback: 10_000_000 },
  // The kernel refuses a path over PATH_MAX (4096 bytes) in an initramfs; 1024 one-letter
  // directories are 2048 bytes.
  depth: { env: "SLIMROOT_MAX_DEPTH", fallback: 1024 },
  read: { env: "SLIMROOT_MAX_READ", fallback: 256 * MiB },
  line: { env: "SLIMROOT_MAX_LINE", fallback: 1 * MiB },
};

/** The limits, each from its variable when set (a positive integer) or its default. */
export function limitsFromEnv(env: NodeJS.ProcessEnv = process.env): Limits {
  const out = {} as Limits;
  for (const [key, { env: name, fallback }] of Object.entries(LIMITS) as [
    keyof Limits,
    { env: string; fallback: number },
  ][]) {
    const text = env[name];
    if (text === undefined || text === "") {
      out[key] = fallback;
      continue;
    }
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n <= 0)
      throw new UserError(`${name}=${text}: expected a positive integer`);
    out[key] = n;
  }
  return out;
}

/** A limit was reached. Callers add where (the layer and entry, the file and line). */
export class LimitError extends UserError {}

/** "WHAT, over the limit of N (set SLIMROOT_X to raise it)": every limit message ends the same way. */
export function overLimit(what: string, key: keyof Limits, limit: number): LimitError {
  const { env } = LIMITS[key];
  return new LimitError(`${what}, over the limit of ${limit}${unit(key, limit)} (set ${env} to raise it)`);
}

function unit(key: keyof Limits, n: number): string {
  if (key !== "bytes" && key !== "read" && key !== "line") return "";
  return n >= GiB ? ` bytes (${round(n / GiB)} GiB)` : n >= MiB ? ` bytes (${round(n / MiB)} MiB)` : " bytes";
}

const round = (x: number) => Math.round(x * 10) / 10;

/** Runs `spend` (budget calls); a limit it reaches is refused in one line starting with `where`. */
export function spending(where: string, spend: () => void): void {
  try {
    spend();
  } catch (err) {
    throw err instanceof LimitError ? new LimitError(`${where}: ${err.message}`) : err;
  }
}

/** Free space kept beyond what slimroot writes to a temp filesystem (other writers share TMPDIR). */
const ROOM_RESERVE = 64 * MiB;

/**
 * Refuses to write `bytes` more into `dir` when its filesystem has less than that free (plus a
 * reserve): said before the first byte, not as ENOSPC half way. The machine's limit: exit 2.
 */
export function checkRoom(dir: string, bytes: number): void {
  const fs = statfsSync(dir);
  const free = fs.bavail * fs.bsize;
  if (free < bytes + ROOM_RESERVE)
    throw new EnvironmentError(
      `${bytes} bytes to write in ${dir}, but its filesystem has ${free} bytes free (set TMPDIR to a larger one)`,
    );
}

/** The largest file an output format can hold, and its name for the message. */
export interface FormatLimits {
  maxFileSize?: { bytes: number; format: string };
  /** The longest path (bytes) a format can take, and the format's name for the message. */
  maxPathBytes?: { bytes: number; format: string };
}

/**
 * What has been spent of the limits while one image is read. A Tree holds one; every reader
 * that adds to the tree (tar layers, host paths, lists) calls `entry` and `file` before it
 * adds, so the next source inherits the bounds.
 */
export class Budget {
  private bytes = 0;
  private entries = 0;

  constructor(
    readonly limits: Limits = limitsFromEnv(),
    readonly format: FormatLimits = {},
  ) {}

  /** One more entry at image path `path` ("" is the root). */
  entry(path: string): void {
    if (++this.entries > this.limits.entries)
      throw overLimit(`entry number ${this.entries}`, "entries", this.limits.entries);
    if (path.length >= this.limits.depth) {
      let depth = 1;
      for (let i = path.indexOf("/"); i >= 0; i = path.indexOf("/", i + 1)) depth++;
      if (depth > this.limits.depth) throw overLimit(`${depth} directories deep`, "depth", this.limits.depth);
    }
    const max = this.format.maxPathBytes;
    // Bytes are counted only for paths that may be too long (a character is 1 to 3 bytes).
    if (max && path.length * 3 > max.bytes && Buffer.byteLength(path) > max.bytes)
      throw new LimitError(
        `${Buffer.byteLength(path)}-byte path is longer than ${max.format} takes (${max.bytes} bytes)`,
      );
  }

  /** A regular file of `size` bytes is about to be added (spooled, or read later from the host). */
  file(size: number): void {
    const max = this.format.maxFileSize;
    if (max && size > max.bytes)
      throw new LimitError(`${size}-byte file is larger than ${max.format} can hold (${max.bytes} bytes)`);
    if (this.bytes + size > this.limits.bytes)
      throw overLimit(
        `${size}-byte file brings the expanded image to ${this.bytes + size} bytes`,
        "bytes",
        this.limits.bytes,
      );
    this.bytes += size;
  }
}
