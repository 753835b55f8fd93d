/**
 * Pulls an image pushed in slimroot's form back to a file: the platform's manifest (through
 * an index), its one layer into the blob cache (verified by digest, not fetched again when
 * the cache has it), then into the output through src/output, verified again as it is copied.
 */

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openVerified } from "../image/digest.js";
import { MEDIA, readManifest } from "../image/manifest.js";
import { selectFromIndex } from "../image/platform.js";
import { BlobCache } from "../image/registry/blob-cache.js";
import { RegistrySession } from "../image/registry/session.js";
import type { Platform } from "../image/types.js";
import { writeFileAtomically } from "../output/atomic.js";
import { cacheRoot } from "../util/cache-dir.js";
import { UserError } from "../util/errors.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";
import { ARTIFACT_TYPE, CONFIG_TYPE, formatOfMediaType } from "./form.js";

export interface PullFileOptions {
  insecure?: boolean;
  platform: Platform;
  cacheDir?: string;
  progress?: (p: { done: number; total: number }) => void;
}

export interface PulledFile {
  /** The image manifest's digest, and the layer's. */
  digest: string;
  layer: string;
  format: string;
  bytes: number;
}

const ACCEPT = [MEDIA.ociManifest, MEDIA.ociIndex].join(", ");

/** The image manifest `ref` names for `platform` (through an index), as the session reads it. */
export async function resolveImage(session: RegistrySession, platform: Platform) {
  const { where } = session;
  const reference = session.ref.digest ?? session.ref.tag ?? "latest";
  let got = await session.manifest(reference, ACCEPT, session.ref.digest);
  let doc = readManifest(got.bytes, `${where}: manifest ${reference}`, got.type);
  if (doc.kind === "index") {
    const entry = selectFromIndex(doc.doc.manifests, platform, where);
    got = await session.manifest(entry.digest, ACCEPT, entry.digest, entry.size);
    doc = readManifest(got.bytes, `${where}: manifest ${entry.digest}`, got.type);
    if (doc.kind === "index") throw new UserError(`${where}: an index inside an index; not slimroot's form`);
  }
  return { digest: got.digest, manifest: doc.doc as typeof doc.doc & { artifactType?: string } };
}

/** Writes the slimroot image at `ref` for `o.platform` to `output` (checked by the caller). */
export async function pullFile(ref: string, output: string, o: PullFileOptions): Promise<PulledFile> {
  const session = await RegistrySession.open(ref, { insecure: Boolean(o.insecure) });
  const { where } = session;
  const got = await resolveImage(session, o.platform);
  const m = got.manifest;
  if (m.artifactType !== ARTIFACT_TYPE && m.config.mediaType !== CONFIG_TYPE)
    throw new UserError(
      `${where}: not a slimroot image (artifactType ${m.artifactType ?? "none"}); to build from a container image use slimroot build`,
    );
  const layer = m.layers.length === 1 ? m.layers[0]! : undefined;
  const format = layer?.mediaType ? formatOfMediaType(layer.mediaType) : undefined;
  if (!layer || !format)
    throw new UserError(
      `${where}: a slimroot image has one layer of a slimroot media type; this one does not`,
    );
  const cache = new BlobCache(o.cacheDir ?? cacheRoot());
  let done = 0;
  o.progress?.({ done, total: layer.size });
  const cached = await session.blob(layer, cache, undefined, (n) => {
    done += n;
    o.progress?.({ done, total: layer.size });
  });
  const bytes = await writeFileAtomically(
    output,
    await openVerified(cached, layer.digest, `${where}: layer ${layer.digest}`),
  );
  return { digest: got.digest, layer: layer.digest, format, bytes };
}

/**
 * Pulls `ref` into a private temp directory, for `run docker://...`: the VM may write to a
 * disk image, and those writes must touch neither the cache nor a file of the user's.
 * `remove` deletes it (a signal's handler does too).
 */
export async function pullToTemp(
  ref: string,
  o: PullFileOptions,
): Promise<{ path: string; pulled: PulledFile; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "slimroot-pulled-"));
  trackTempPath(dir);
  const remove = async () => {
    await rm(dir, { recursive: true, force: true });
    untrackTempPath(dir);
  };
  try {
    const path = join(dir, "image");
    return { path, pulled: await pullFile(ref, path, o), remove };
  } catch (err) {
    await remove();
    throw err;
  }
}
