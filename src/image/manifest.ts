import { UserError } from "../util/errors.js";
import { checkDocument, type DescriptorDoc, type Documents, readDocument } from "./schemas.js";
import type { ImageConfig, Platform } from "./types.js";

export const MEDIA = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
} as const;

/** A content descriptor, as checked by the schemas (digest well-formed, size present). */
export type Descriptor = DescriptorDoc;

/**
 * True when a parsed manifest document is an index / manifest list rather than an image:
 * by its mediaType, or, when it has none, by listing manifests and no layers.
 */
export function isIndex(doc: { mediaType?: string; manifests?: unknown; layers?: unknown }): boolean {
  if (doc.mediaType === MEDIA.ociIndex || doc.mediaType === MEDIA.dockerList) return true;
  return doc.mediaType === undefined && Array.isArray(doc.manifests) && !doc.layers;
}

export type ManifestDoc =
  | { kind: "index"; doc: Documents["index"] }
  | { kind: "image"; doc: Documents["imageManifest"] };

/**
 * Parses a manifest blob (registry or OCI layout) and checks it against the index or the
 * image manifest schema, whichever it is. `contentType` stands in for a missing mediaType
 * (some registries only send it as a header).
 */
export function readManifest(data: Buffer, what: string, contentType?: string): ManifestDoc {
  const doc = readDocument("manifestDocument", data, what);
  if (doc.mediaType === undefined && (Object.values(MEDIA) as string[]).includes(contentType ?? ""))
    doc.mediaType = contentType;
  if (doc.schemaVersion === 1) {
    throw new UserError(
      `${what}: Docker schema 1 manifests are not supported; re-push the image with a current tool`,
    );
  }
  if (isIndex(doc)) return { kind: "index", doc: checkDocument("index", doc, what) };
  return { kind: "image", doc: checkDocument("imageManifest", doc, what) };
}

/** The run settings of an OCI/Docker image config document, plus its platform. */
export function imageConfigFromJson(
  doc: unknown,
  what: string,
): { config: ImageConfig; platform?: Platform } {
  const d = checkDocument("imageConfig", doc, what);
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
