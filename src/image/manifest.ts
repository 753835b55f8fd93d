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
  const strings = (v: unknown) =>
    Array.isArray(v) && v.every((x) => typeof x === "string") ? (v as string[]) : undefined;
  const config: ImageConfig = {};
  const entrypoint = strings(c.Entrypoint);
  const cmd = strings(c.Cmd);
  const env = strings(c.Env);
  if (entrypoint) config.entrypoint = entrypoint;
  if (cmd) config.cmd = cmd;
  if (env) config.env = env;
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
