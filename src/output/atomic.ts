/**
 * How every output is written: a temp file (or directory) beside its target, fsynced, then
 * renamed into place together with the files that belong with it (an image and its .why), or
 * not at all. Paths are made absolute here, once: a writer may `cd` (the mkfs tools run after
 * `cd /` under fakeroot) and a relative temp name would then land somewhere else.
 */
import { randomBytes } from "node:crypto";
import { copyFileSync, createWriteStream, linkSync, lstatSync, renameSync, rmSync } from "node:fs";
import { open, rm, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { type Duplex, type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { UserError } from "../util/errors.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";

/** One file for writeFilesAtomically: `source` passed through `transforms` into `target`. */
export interface FileToWrite {
  target: string;
  /** A function is called when this file's turn comes (after the files before it are written). */
  source?: Readable | (() => Readable);
  /**
   * Instead of `source`: writes the temp file itself, creating it (another program such as
   * mke2fs or mksquashfs writes the disk images); may return the bytes it wrote.
   */
  write?: (tmp: string) => Promise<number | undefined>;
  transforms?: Duplex[];
  mode?: number;
  /** `write` makes a directory, which replaces an existing directory whole (checkOutputDir says which may be replaced). */
  directory?: boolean;
}

/** Writes files as writeFilesAtomically does (an OutputDir's writer defers the renames to its commit). */
export type FileWriter = (
  files: FileToWrite[],
  beforeRename?: (tmps: string[]) => Promise<void>,
) => Promise<number[]>;

/** A name beside `target` that nothing else uses: `.NAME.PID-RANDOM.SUFFIX`. */
function besideName(target: string, suffix: string): string {
  return join(
    dirname(resolve(target)),
    `.${basename(target)}.${process.pid}-${randomBytes(4).toString("hex")}.${suffix}`,
  );
}

/** fsyncs a written file. */
async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Writes one temp file; returns its byte count and its fsync, started but not awaited (the
 * next file is written while the disk catches up). The caller removes `tmp`.
 */
async function writeTemp(
  tmp: string,
  f: FileToWrite,
  durable: boolean,
): Promise<{ bytes: number; sync: Promise<void> }> {
  const sync = () => (durable ? fsyncFile(tmp) : Promise.resolve());
  if (f.write) {
    const wrote = await f.write(tmp);
    const bytes = typeof wrote === "number" ? wrote : (await stat(tmp)).size;
    return { bytes, sync: sync() };
  }
  let bytes = 0;
  // Writes queue on libuv's thread pool behind whatever else is there (a compressor's deflate
  // calls): with the 16 KiB default each write held the stream before it back.
  const out = createWriteStream(tmp, { mode: f.mode ?? 0o644, flags: "wx", highWaterMark: 1 << 20 });
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
  return { bytes, sync: sync() };
}

interface Pair {
  tmp: string;
  target: string;
  directory: boolean;
}

export function lstatOrUndefined(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Moves every temp file onto its target, or none: each existing target but the last is first
 * kept under a hard link (a copy where links are not allowed), an existing directory target is
 * moved aside (a rename cannot replace a directory that is not empty), and if one rename
 * fails the targets already replaced get their old file back. All synchronous, so no signal
 * handler (they run on the event loop) can end the process between two renames.
 */
function commitSync(pairs: readonly Pair[]): void {
  for (const { target, directory } of pairs) {
    const st = lstatOrUndefined(target);
    if (st && !st.isFile() && !st.isSymbolicLink() && !(directory && st.isDirectory()))
      throw new UserError(`${target}: not a regular file; refusing to replace it`);
  }
  const backups: (string | undefined)[] = pairs.map(() => undefined);
  const movedAside: boolean[] = pairs.map(() => false);
  let done = 0;
  try {
    for (const [i, { target }] of pairs.entries()) {
      const st = lstatOrUndefined(target);
      if (!st) continue;
      const backup = besideName(target, "old");
      if (st.isDirectory()) {
        renameSync(target, backup);
        movedAside[i] = true;
      } else if (i < pairs.length - 1) {
        // The last rename has nothing after it that could fail: it needs no way back.
        try {
          linkSync(target, backup);
        } catch {
          copyFileSync(target, backup);
        }
      } else continue;
      backups[i] = backup;
    }
    for (const { tmp, target } of pairs) {
      renameSync(tmp, target);
      done++;
    }
  } catch (err) {
    for (const [i, { target }] of pairs.entries()) {
      const backup = backups[i];
      // What we put in place is ours to remove; what was there comes back.
      if (i < done && (!backup || movedAside[i])) rmSync(target, { recursive: true, force: true });
      if (backup && (i < done || movedAside[i])) renameSync(backup, target);
      backups[i] = undefined;
    }
    throw err;
  } finally {
    for (const b of backups) if (b) rmSync(b, { recursive: true, force: true });
  }
}

/**
 * Temp files written now and renamed onto their targets together later (`commit`), or
 * removed (`discard`). Every target is made absolute, and no two may be the same file.
 */
export class Batch {
  private readonly pairs: Pair[] = [];
  /** The fsync of every temp file written so far. */
  private readonly syncs: Promise<void>[] = [];

  /**
   * `durable: false`: no fsync, for files that live only as long as this process (run's
   * private scratch directory, removed when the VM ends); still whole or absent.
   */
  constructor(private readonly o: { durable: boolean } = { durable: true }) {}

  /** Writes `f` to a temp file beside its target and fsyncs it; returns its byte count. */
  async add(f: FileToWrite): Promise<number> {
    const bytes = await this.write(f);
    await this.synced();
    return bytes;
  }

  /** Writes `f` to a temp file beside its target; its fsync goes on meanwhile (see synced). */
  async write(f: FileToWrite): Promise<number> {
    const target = resolve(f.target);
    if (this.pairs.some((p) => p.target === target))
      throw new Error(`internal: ${target} is written twice in one batch`);
    const tmp = besideName(target, "tmp");
    trackTempPath(tmp);
    this.pairs.push({ tmp, target, directory: Boolean(f.directory) });
    const { bytes, sync } = await writeTemp(tmp, { ...f, target }, this.o.durable);
    // Awaited in synced() (or discarded); not an unhandled rejection in between.
    sync.catch(() => undefined);
    this.syncs.push(sync);
    return bytes;
  }

  /** Resolves once every temp file written so far is on disk; rejects with a failed fsync's error. */
  async synced(): Promise<void> {
    await Promise.all(this.syncs);
  }

  /** The temp files so far, in the order added. */
  temps(): string[] {
    return this.pairs.map((p) => p.tmp);
  }

  commit(): void {
    commitSync(this.pairs);
  }

  /** Removes whatever temp files were not renamed (all of them after a failure). */
  async discard(): Promise<void> {
    await Promise.allSettled(this.syncs);
    await Promise.all(this.pairs.map((p) => rm(p.tmp, { recursive: true, force: true })));
    for (const p of this.pairs) untrackTempPath(p.tmp);
  }
}

/**
 * Writes several files that belong together (an image and its .why): each through a temp
 * file in its target's directory, fsynced; `beforeRename` gets the complete temp files (in
 * order) and may throw; then all are renamed into place together (see commitSync). On any
 * error the temp files are removed and every target is as it was. Returns the byte counts.
 */
export const writeFilesAtomically: FileWriter = async (files, beforeRename) => {
  const batch = new Batch();
  try {
    const bytes: number[] = [];
    // The image's fsync runs while its .why is encoded and written.
    for (const f of files) bytes.push(await batch.write(f));
    await batch.synced();
    await beforeRename?.(batch.temps());
    batch.commit();
    return bytes;
  } finally {
    await batch.discard();
  }
};

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
