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
  const tmp = join(
    dirname(target),
    `.${basename(target)}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`,
  );
  trackTempPath(tmp);
  let bytes = 0;
  try {
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
    const fh = await open(tmp, "r");
    await fh.sync();
    await fh.close();
    await beforeRename?.(tmp);
    await rename(tmp, target);
    return bytes;
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  } finally {
    untrackTempPath(tmp);
  }
}
