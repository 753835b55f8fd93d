import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { pipeline as pipelineCb, type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { UserError } from "../util/errors.js";
import { inputStream } from "../util/input-file.js";

/**
 * Content digests, for every source that trusts bytes by their digest (the registry client
 * and its blob cache, OCI layouts): one parser, one blob path rule, one verification message.
 */

const HEX_LENGTH = { sha256: 64, sha512: 128 } as const;
export type DigestAlgorithm = keyof typeof HEX_LENGTH;

/** Splits "alg:hex"; anything else (other algorithms, upper case, path tricks) is refused. */
export function parseDigest(digest: unknown, what: string): { algorithm: DigestAlgorithm; hex: string } {
  const m = typeof digest === "string" ? /^(sha256|sha512):([0-9a-f]+)$/.exec(digest) : null;
  const algorithm = m?.[1] as DigestAlgorithm | undefined;
  if (!m || !algorithm || m[2]!.length !== HEX_LENGTH[algorithm])
    throw new UserError(
      `${what}: malformed or unsupported digest ${JSON.stringify(digest)} (sha256 or sha512)`,
    );
  return { algorithm, hex: m[2]! };
}

/** Where a blob lives under a content-addressed root (OCI layout or the blob cache): blobs/<alg>/<hex>. */
export function blobPath(digest: string, what: string): string {
  const { algorithm, hex } = parseDigest(digest, what);
  return `blobs/${algorithm}/${hex}`;
}

export function digestOf(data: Buffer | string, algorithm: DigestAlgorithm = "sha256"): string {
  return `${algorithm}:${createHash(algorithm).update(data).digest("hex")}`;
}

function mismatch(what: string, digest: string, got: string): UserError {
  return new UserError(
    `${what}: digest mismatch (expected ${digest}, content hashes to ${got}); refusing it`,
  );
}

export function verifyDigest(data: Buffer, digest: string, what: string): void {
  const { algorithm } = parseDigest(digest, what);
  const got = digestOf(data, algorithm);
  if (got !== digest) throw mismatch(what, digest, got);
}

/** Passes bytes through and fails at the end when they do not hash to `digest`. */
export function digestVerifier(digest: string, what: string): Transform {
  const { algorithm } = parseDigest(digest, what);
  const hash = createHash(algorithm);
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
    flush(cb) {
      const got = `${algorithm}:${hash.digest("hex")}`;
      cb(got === digest ? null : mismatch(what, digest, got));
    },
  });
}

/** The digest of a file's content, with the algorithm of `like`. */
export async function hashFile(file: string, like: string, what: string): Promise<string> {
  const { algorithm } = parseDigest(like, what);
  const hash = createHash(algorithm);
  await pipeline(createReadStream(file), hash);
  return `${algorithm}:${hash.digest("hex")}`;
}

/**
 * Opens a stored blob (OCI layout or blob cache) as a stream that fails, naming `what`, when
 * its bytes do not hash to `digest`: what was verified once can have changed on disk since.
 */
export async function openVerified(file: string, digest: string, what: string): Promise<Readable> {
  const verify = digestVerifier(digest, what);
  // A blob that is a FIFO or a device would hang or never end: refused like any input.
  if (!existsSync(file)) throw new UserError(`${what}: blob ${digest} is missing (${file})`);
  const stream = await inputStream(file, `${what}: blob ${digest} (${file})`);
  pipelineCb(stream, verify, () => undefined);
  return verify;
}
