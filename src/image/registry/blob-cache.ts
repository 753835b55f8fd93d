import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rename, stat, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { EnvironmentError, UserError } from "../../util/errors.js";
import { trackTempPath, untrackTempPath } from "../../util/temp-paths.js";
import { blobPath, digestVerifier, hashFile, parseDigest } from "../digest.js";
import type { Descriptor } from "../manifest.js";

/**
 * A content-addressed store under `<root>/blobs/<alg>/<hex>`. Blobs are written to a temp
 * file beside their final place and renamed in only once their digest checks out; a blob
 * found in the cache is hashed again before it is used (the cache is only a file tree, and
 * anything can change it), and layers are verified again as they are read.
 */
export class BlobCache {
  constructor(readonly root: string) {}

  path(digest: string, where: string): string {
    return join(this.root, blobPath(digest, where));
  }

  /** True when the blob is cached and still hashes to its digest; anything else is dropped (and fetched again). */
  async has(d: Descriptor, where: string): Promise<boolean> {
    const file = this.path(d.digest, where);
    let actual: number;
    try {
      actual = (await stat(file)).size;
    } catch {
      return false;
    }
    if (actual === d.size && (await hashFile(file, d.digest, where).catch(() => "")) === d.digest)
      return true;
    await unlink(file).catch(() => {});
    return false;
  }

  /**
   * Streams `body` into the cache, hashing as it goes; refuses it (and leaves nothing behind,
   * even when a signal ends the process) when its digest or size is not what the descriptor
   * says. Reading stops at the descriptor's size. `onBytes` sees every chunk.
   */
  async store(
    d: Descriptor,
    body: Readable,
    where: string,
    onBytes: (n: number) => void = () => {},
  ): Promise<string> {
    const { digest, size } = d;
    const file = this.path(digest, where);
    const dir = dirname(file);
    try {
      await mkdir(dir, { recursive: true });
    } catch (err) {
      throw new EnvironmentError(`${where}: cannot create blob cache ${dir}: ${(err as Error).message}`);
    }
    const temp = join(
      dir,
      `.${parseDigest(digest, where).hex}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`,
    );
    let count = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        count += chunk.length;
        // Stop early rather than fill the disk when a server sends more than it should.
        if (count > size) {
          done(new UserError(`${where}: blob ${digest} is larger than the ${size} bytes the manifest says`));
          return;
        }
        onBytes(chunk.length);
        done(null, chunk);
      },
    });
    const verify = digestVerifier(digest, `${where}: blob ${digest}`);
    trackTempPath(temp);
    try {
      try {
        await pipeline(body, meter, verify, createWriteStream(temp, { mode: 0o644 }));
      } catch (err) {
        if (err instanceof UserError || err instanceof EnvironmentError) throw err;
        const code = (err as NodeJS.ErrnoException).code;
        const msg = (err as Error).message;
        throw new EnvironmentError(
          `${where}: downloading blob ${digest} failed: ${code ? `${code} ` : ""}${msg}`,
        );
      }
      if (count !== size) {
        throw new UserError(
          `${where}: blob ${digest} is ${count} bytes, the manifest says ${size}; refusing it`,
        );
      }
      await rename(temp, file);
      return file;
    } catch (err) {
      await unlink(temp).catch(() => {});
      throw err;
    } finally {
      untrackTempPath(temp);
    }
  }
}
