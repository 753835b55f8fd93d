import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { EnvironmentError, UserError } from "../../util/errors.js";

const DIGEST_RE = /^sha256:([a-f0-9]{64})$/;

/** The hex of a sha256 digest; anything else (other algorithms, path tricks) is refused. */
export function digestHex(digest: string, where: string): string {
  const m = DIGEST_RE.exec(digest);
  if (!m)
    throw new UserError(`${where}: unsupported or malformed digest "${digest}" (only sha256 is supported)`);
  return m[1]!;
}

/**
 * A content-addressed store under `<root>/blobs/sha256/<hex>`. Blobs are written to a temp
 * file beside their final place and renamed in only once their digest checks out, so a
 * blob in the cache is always complete and correct (even with several writers at once).
 */
export class BlobCache {
  constructor(readonly root: string) {}

  path(digest: string, where: string): string {
    return join(this.root, "blobs", "sha256", digestHex(digest, where));
  }

  /** True when the blob is cached with the expected size (a wrong-sized file is dropped). */
  async has(digest: string, size: number | undefined, where: string): Promise<boolean> {
    const file = this.path(digest, where);
    let actual: number;
    try {
      actual = (await stat(file)).size;
    } catch {
      return false;
    }
    if (size === undefined ? (await hashFile(file)) === digest : actual === size) return true;
    await unlink(file).catch(() => {});
    return false;
  }

  /**
   * Streams `body` into the cache, hashing as it goes; refuses it (and leaves nothing behind)
   * when its digest or size is not what the manifest says. `onBytes` sees every chunk.
   */
  async store(
    digest: string,
    size: number | undefined,
    body: Readable,
    where: string,
    onBytes: (n: number) => void = () => {},
  ): Promise<string> {
    const file = this.path(digest, where);
    const dir = join(file, "..");
    try {
      await mkdir(dir, { recursive: true });
    } catch (err) {
      throw new EnvironmentError(`${where}: cannot create blob cache ${dir}: ${(err as Error).message}`);
    }
    const temp = join(
      dir,
      `.${digestHex(digest, where)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`,
    );
    const hash = createHash("sha256");
    let count = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        count += chunk.length;
        // Stop early rather than fill the disk when a server sends more than it should.
        if (size !== undefined && count > size) {
          done(new UserError(`${where}: blob ${digest} is larger than the ${size} bytes the manifest says`));
          return;
        }
        hash.update(chunk);
        onBytes(chunk.length);
        done(null, chunk);
      },
    });
    try {
      try {
        await pipeline(body, meter, createWriteStream(temp, { mode: 0o644 }));
      } catch (err) {
        if (err instanceof UserError || err instanceof EnvironmentError) throw err;
        const code = (err as NodeJS.ErrnoException).code;
        const msg = (err as Error).message;
        throw new EnvironmentError(
          `${where}: downloading blob ${digest} failed: ${code ? `${code} ` : ""}${msg}`,
        );
      }
      const got = `sha256:${hash.digest("hex")}`;
      if (got !== digest) {
        throw new UserError(
          `${where}: blob ${digest} failed verification (its content hashes to ${got}); refusing it`,
        );
      }
      if (size !== undefined && count !== size) {
        throw new UserError(
          `${where}: blob ${digest} is ${count} bytes, the manifest says ${size}; refusing it`,
        );
      }
      await rename(temp, file);
      return file;
    } catch (err) {
      await unlink(temp).catch(() => {});
      throw err;
    }
  }
}

async function hashFile(file: string): Promise<string> {
  const hash = createHash("sha256");
  await pipeline(createReadStream(file), hash);
  return `sha256:${hash.digest("hex")}`;
}
