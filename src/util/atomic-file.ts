import { randomBytes } from "node:crypto";
import { copyFileSync, createWriteStream, linkSync, lstatSync, renameSync, rmSync } from "node:fs";
import { open, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { type Duplex, type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { UserError } from "./errors.js";
import { trackTempPath, untrackTempPath } from "./temp-paths.js";

/** One file for writeFilesAtomically: `source` passed through `transforms` into `target`. */
export interface FileToWrite {
  target: string;
  /** A function is called when this file's turn comes (after the files before it are written). */
  source?: Readable | (() => Readable);
  /**
   * Instead of `source`: writes the temp file itself, creating it (another program such as
   * mke2fs or mksquashfs writes the disk images).
   */
  write?: (tmp: string) => Promise<void>;
  transforms?: Duplex[];
  mode?: number;
}

/** A name beside `target` that nothing else uses: `.NAME.PID-RANDOM.SUFFIX`. */
function besideName(target: string, suffix: string): string {
  return join(
    dirname(target),
    `.${basename(target)}.${process.pid}-${randomBytes(4).toString("hex")}.${suffix}`,
  );
}

/** Writes one temp file and fsyncs it; returns its byte count. The caller removes `tmp`. */
async function writeTemp(tmp: string, f: FileToWrite): Promise<number> {
  if (f.write) {
    await f.write(tmp);
    const fh = await open(tmp, "r");
    try {
      await fh.sync();
      return (await fh.stat()).size;
    } finally {
      await fh.close();
    }
  }
  let bytes = 0;
  const out = createWriteStream(tmp, { mode: f.mode ?? 0o644, flags: "wx" });
  let outError: unknown;
  out.on("error", (err) => {
    outError = err;
  });
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      cb(null, chunk);
    },
  });
  if (!f.source) throw new Error(`internal: ${f.target}: nothing to write`);
  const source = typeof f.source === "function" ? f.source() : f.source;
  await pipeline([source, ...(f.transforms ?? []), counter, out]).catch((err: NodeJS.ErrnoException) => {
    // Only the output's own errors are about the output; the rest are about what was read.
    if (err === outError) {
      if (err.code === "ENOENT" || err.code === "EACCES" || err.code === "EROFS" || err.code === "EPERM")
        throw new UserError(`${f.target}: cannot write here (${err.code})`);
      if (err.code === "ENOSPC") throw new UserError(`${f.target}: no space left on the device`);
    } else if (err.syscall === "open" || err.syscall === "read") {
      if (err.path) throw new UserError(`${err.path}: cannot read (${err.code})`);
    }
    throw err;
  });
  const fh = await open(tmp, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  return bytes;
}

/**
 * Moves every temp file onto its target, or none: each existing target but the last is first
 * kept under a hard link (a copy where links are not allowed), and if one rename fails the
 * targets already replaced get their old file back. All synchronous, so no signal handler (they run on the
 * event loop) can end the process between two renames.
 */
function commitSync(pairs: { tmp: string; target: string }[]): void {
  for (const { target } of pairs) {
    const st = (() => {
      try {
        return lstatSync(target);
      } catch {
        return undefined;
      }
    })();
    if (st && !st.isFile() && !st.isSymbolicLink())
      throw new UserError(`${target}: not a regular file; refusing to replace it`);
  }
  const backups: (string | undefined)[] = [];
  try {
    // The last rename has nothing after it that could fail: it needs no way back.
    for (const { target } of pairs.slice(0, -1)) {
      const backup = besideName(target, "old");
      try {
        linkSync(target, backup);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT") {
          backups.push(undefined);
          continue;
        }
        copyFileSync(target, backup);
      }
      backups.push(backup);
    }
    let done = 0;
    try {
      for (const { tmp, target } of pairs) {
        renameSync(tmp, target);
        done++;
      }
    } catch (err) {
      for (let i = 0; i < done; i++) {
        const backup = backups[i];
        if (backup) renameSync(backup, pairs[i]!.target);
        else rmSync(pairs[i]!.target, { force: true });
        backups[i] = undefined;
      }
      throw err;
    }
  } finally {
    for (const b of backups) if (b) rmSync(b, { force: true });
  }
}

/**
 * Writes several files that belong together (an image and its .why): each through a temp
 * file in its target's directory, fsynced; `beforeRename` gets the complete temp files (in
 * order) and may throw; then all are renamed into place together (see commitSync). On any
 * error the temp files are removed and every target is as it was. Returns the byte counts.
 */
export async function writeFilesAtomically(
  files: FileToWrite[],
  beforeRename?: (tmps: string[]) => Promise<void>,
): Promise<number[]> {
  const tmps = files.map((f) => besideName(f.target, "tmp"));
  for (const t of tmps) trackTempPath(t);
  try {
    const bytes: number[] = [];
    for (const [i, f] of files.entries()) bytes.push(await writeTemp(tmps[i]!, f));
    await beforeRename?.(tmps);
    commitSync(files.map((f, i) => ({ tmp: tmps[i]!, target: f.target })));
    return bytes;
  } finally {
    await Promise.all(tmps.map((t) => rm(t, { force: true })));
    for (const t of tmps) untrackTempPath(t);
  }
}

/**
 * Writes `source`, passed through `transforms`, to `target` through a temp file in the same
 * directory, fsyncs it and renames it into place, so `target` is either the old file or the
 * complete new one. `beforeRename` gets the complete temp file first (build's verification
 * boots it); if it throws, `target` stays as it was.
 */
export async function writeFileAtomically(
  target: string,
  source: Readable,
  transforms: Duplex[] = [],
  mode = 0o644,
  beforeRename?: (tmp: string) => Promise<void>,
): Promise<number> {
  const [bytes] = await writeFilesAtomically(
    [{ target, source, transforms, mode }],
    beforeRename ? (tmps) => beforeRename(tmps[0]!) : undefined,
  );
  return bytes!;
}
