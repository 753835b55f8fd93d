import { createHash } from "node:crypto";
import { Transform } from "node:stream";
import { UserError } from "../util/errors.js";
import type { IndexEntry } from "./platform.js";
import type { ImageConfig, Platform } from "./types.js";

export const MEDIA = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
} as const;

export interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
}

export interface ImageManifest {
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

export interface ImageIndex {
  mediaType?: string;
  manifests: IndexEntry[];
}

/**
 * True when a parsed manifest document is an index / manifest list rather than an image:
 * by its mediaType, or, when it has none, by listing manifests and no layers.
 */
export function isIndex(doc: {
  mediaType?: string;
  manifests?: unknown;
  layers?: unknown;
}): doc is ImageIndex {
  if (doc.mediaType === MEDIA.ociIndex || doc.mediaType === MEDIA.dockerList) return true;
  return doc.mediaType === undefined && Array.isArray(doc.manifests) && !doc.layers;
}

export function parseJson<T>(data: Buffer | string, what: string): T {
  try {
    return JSON.parse(data.toString()) as T;
  } catch (err) {
    throw new UserError(`${what}: invalid JSON (${(err as Error).message})`);
  }
}

export function asManifest(doc: unknown, what: string): ImageManifest {
  const m = doc as Partial<ImageManifest>;
  if (!m || typeof m !== "object" || !m.config?.digest || !Array.isArray(m.layers)) {
    throw new UserError(`${what}: not an image manifest (no config or layers)`);
  }
  return m as ImageManifest;
}

/** The run settings of an OCI/Docker image config document, plus its platform. */
export function imageConfigFromJson(
  doc: unknown,
  what: string,
): { config: ImageConfig; platform?: Platform } {
  if (!doc || typeof doc !== "object") throw new UserError(`${what}: image config is not an object`);
  const d = doc as { config?: Record<string, unknown>; os?: string; architecture?: string; variant?: string };
  const c = d.config ?? {};
  const config: ImageConfig = {};
  const entrypoint = argvOf(c.Entrypoint, "Entrypoint", what);
  const cmd = argvOf(c.Cmd, "Cmd", what);
  if (entrypoint) config.entrypoint = entrypoint;
  if (cmd) config.cmd = cmd;
  if (c.Env !== undefined && c.Env !== null) {
    if (!Array.isArray(c.Env) || !c.Env.every((x) => typeof x === "string"))
      throw new UserError(`${what}: Env must be an array of "NAME=value" strings`);
    // An entry without "=" (or with no name) sets nothing: dockerd reads "NAME" alone as
    // "unset NAME" when it builds the container's environment, so it never reaches the app.
    config.env = (c.Env as string[]).filter((e) => e.indexOf("=") > 0);
  }
  if (typeof c.WorkingDir === "string" && c.WorkingDir) config.workingDir = c.WorkingDir;
  if (typeof c.User === "string" && c.User) config.user = c.User;
  if (c.ExposedPorts && typeof c.ExposedPorts === "object")
    config.exposedPorts = Object.keys(c.ExposedPorts).sort();
  const platform =
    d.os && d.architecture
      ? { os: d.os, architecture: d.architecture, ...(d.variant ? { variant: d.variant } : {}) }
      : undefined;
  return platform ? { config, platform } : { config };
}

/**
 * Entrypoint or Cmd: an array of strings, or a string. A string is what a Dockerfile's shell
 * form means, so it runs as ["/bin/sh", "-c", string] as `docker build` writes it; a string that
 * is one plain word needs no shell (and the image may have none), so it runs as [word], which
 * is also how dockerd reads a one-word string. Anything else (a mixed array) is refused.
 */
function argvOf(v: unknown, key: string, what: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") {
    if (v.trim() === "") return [];
    return /^[\w@%+=:,./-]+$/.test(v) ? [v] : ["/bin/sh", "-c", v];
  }
  if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v;
  throw new UserError(
    `${what}: ${key} must be a string or an array of strings, not ${JSON.stringify(v).slice(0, 80)}`,
  );
}

function splitDigest(digest: string, what: string): { algorithm: string; hex: string } {
  const m = /^(sha256|sha512):([0-9a-f]+)$/.exec(digest);
  if (!m || m[2]!.length !== (m[1] === "sha256" ? 64 : 128))
    throw new UserError(`${what}: malformed digest ${digest}`);
  return { algorithm: m[1]!, hex: m[2]! };
}

/** The blob path of a digest inside an OCI layout: blobs/<alg>/<hex>. */
export function blobPath(digest: string, what: string): string {
  const { algorithm, hex } = splitDigest(digest, what);
  return `blobs/${algorithm}/${hex}`;
}

export function verifyDigest(data: Buffer, digest: string, what: string): void {
  const { algorithm, hex } = splitDigest(digest, what);
  const got = createHash(algorithm).update(data).digest("hex");
  if (got !== hex)
    throw new UserError(`${what}: digest mismatch: expected ${digest}, got ${algorithm}:${got}`);
}

/** Passes bytes through and fails at the end when they do not hash to `digest`. */
export function digestVerifier(digest: string, what: string): Transform {
  const { algorithm, hex } = splitDigest(digest, what);
  const hash = createHash(algorithm);
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
    flush(cb) {
      const got = hash.digest("hex");
      cb(
        got === hex
          ? null
          : new UserError(`${what}: digest mismatch: expected ${digest}, got ${algorithm}:${got}`),
      );
    },
  });
}
