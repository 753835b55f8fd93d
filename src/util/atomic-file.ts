import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { type Duplex, type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { UserError } from "./errors.js";
import { trackTempPath, untrackTempPath } from "./temp-paths.js";

/**
 * Writes `source`, passed through `transforms`, to `target` through a temp file in the same directory, fsyncs it and
 * renames it into place, so `target` is either the old file or the complete new one. On
 * any error the temp file is removed and the error rethrown. `beforeRename` gets the
 * complete temp file first (build's verification boots it); if it throws, `target` stays
 * as it was.
 */
export async function writeFileAtomically(
  target: string,
  source: Readable,
  transforms: Duplex[] = [],
  mode = 0o644,
  beforeRename?: (tmp: string) => Promise<void>,
): Promise<number> {
  let bytes = 0;
  await replaceAtomically(
    target,
    async (tmp) => {
      const out = createWriteStream(tmp, { mode, flags: "wx" });
      out.on("error", () => undefined);
      const counter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          bytes += chunk.length;
          cb(null, chunk);
        },
      });
      await pipeline([source, ...transforms, counter, out]).catch((err: NodeJS.ErrnoException) => {
        if (
          err.syscall === "open" &&
          (err.code === "ENOENT" || err.code === "EACCES" || err.code === "EROFS")
        ) {
          throw new UserError(`${target}: cannot write here (${err.code})`);
        }
        throw err;
      });
    },
    beforeRename,
  );
  return bytes;
}

/**
 * The temp-file-and-rename half of writeFileAtomically, for writers that are other programs
 * (mke2fs, mkfs.erofs, mksquashfs): `write` creates the temp path it is given; then it is
 * fsynced, checked by `beforeRename` and renamed over `target`. On any error it is removed.
 */
export async function replaceAtomically(
  target: string,
  write: (tmp: string) => Promise<void>,
  beforeRename?: (tmp: string) => Promise<void>,
): Promise<void> {
  const tmp = join(
    dirname(target),
    `.${basename(target)}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`,
  );
  trackTempPath(tmp);
  try {
    await write(tmp);
    const fh = await open(tmp, "r");
    await fh.sync();
    await fh.close();
    await beforeRename?.(tmp);
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  } finally {
    untrackTempPath(tmp);
  }
}
