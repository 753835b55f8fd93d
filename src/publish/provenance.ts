/**
 * The .why travels with the image as an OCI 1.1 referrer: a manifest whose `subject` is the
 * image manifest, artifactType WHY_TYPE, the .why as its one layer (image-spec manifest.md,
 * "subject"; distribution-spec, "Listing Referrers"). A registry with the referrers API says
 * so with `OCI-Subject` on the PUT; for one without (distribution 2.8, Debian's docker-registry)
 * push keeps the tag-schema fallback: an image index under the tag `sha256-<hex of the
 * subject>` listing the referrers. `inspect docker://...` reads it back either way, without
 * fetching the image's own layer.
 */
import { readFile } from "node:fs/promises";
import { digestOf, verifyDigest } from "../image/digest.js";
import { MEDIA } from "../image/manifest.js";
import type { BlobCache } from "../image/registry/blob-cache.js";
import { readCapped, statusError } from "../image/registry/http.js";
import type { RegistrySession } from "../image/registry/session.js";
import { MAX_WHY_BYTES, parseWhy, type Why } from "../output/why.js";
import { printable, UserError } from "../util/errors.js";
import { ANNOTATION, type Blob, createdAt } from "./form.js";

export const WHY_TYPE = "application/vnd.slimroot.why.v1";
/** The OCI 1.1 empty config (image-spec manifest.md, "Guidance for an Empty Descriptor"). */
export const EMPTY_CONFIG = {
  mediaType: "application/vnd.oci.empty.v1+json",
  digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
  size: 2,
} as const;
export const EMPTY_BYTES = Buffer.from("{}");

/** The referrer manifest: the .why (`why`) about the image manifest `subject`. */
export function whyManifest(subject: Blob, why: Blob, title: string, epoch: number): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      artifactType: WHY_TYPE,
      config: EMPTY_CONFIG,
      layers: [{ ...why, annotations: { [ANNOTATION.title]: title } }],
      subject,
      annotations: { [ANNOTATION.created]: createdAt(epoch) },
    }),
  );
}

/** The fallback tag for `digest`'s referrers (distribution-spec, "Referrers Tag Schema"). */
export const fallbackTag = (digest: string) => digest.replace(":", "-");

interface Descriptor extends Blob {
  artifactType?: string;
}

const ACCEPT_INDEX = MEDIA.ociIndex;

/** The referrers of `digest`: the API's answer, or the fallback tag's index, or none. */
async function referrers(session: RegistrySession, digest: string): Promise<Descriptor[]> {
  const what = `referrers of ${digest}`;
  const res = await session.fetch(`/referrers/${digest}?artifactType=${encodeURIComponent(WHY_TYPE)}`, {
    what,
    size: 4 << 20,
    headers: { accept: ACCEPT_INDEX },
  });
  if (res.ok && res.headers.get("content-type")?.startsWith(MEDIA.ociIndex))
    return indexEntries(await readCapped(res, 4 << 20, what, session.where), session.where, what);
  await res.body?.cancel();
  if (res.status !== 404 && !res.ok) throw await statusError(res, `cannot list ${what}`, session.where);
  return fallbackEntries(session, digest);
}

async function fallbackEntries(session: RegistrySession, digest: string): Promise<Descriptor[]> {
  const tag = fallbackTag(digest);
  const res = await session.fetch(`/manifests/${tag}`, {
    what: `manifest ${tag}`,
    size: 4 << 20,
    headers: { accept: ACCEPT_INDEX },
  });
  if (res.status === 404) {
    await res.body?.cancel();
    return [];
  }
  if (!res.ok) throw await statusError(res, `cannot fetch manifest ${tag}`, session.where);
  return indexEntries(await readCapped(res, 4 << 20, `manifest ${tag}`, session.where), session.where, tag);
}

function indexEntries(bytes: Buffer, where: string, what: string): Descriptor[] {
  let doc: { manifests?: unknown };
  try {
    doc = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new UserError(`${where}: ${what} is not JSON`);
  }
  if (!Array.isArray(doc.manifests)) throw new UserError(`${where}: ${what} is not an image index`);
  return doc.manifests as Descriptor[];
}

/**
 * Attaches the .why (`bytes`) to the manifest `subject`: the blobs, the referrer by digest,
 * and, when the registry did not index it itself, the fallback tag's index with it added
 * (what was listed there stays). Each step goes through `retried`; `mountFrom` as uploadBlob's.
 */
export async function pushWhy(
  session: RegistrySession,
  subject: Blob,
  why: { bytes: Buffer; title: string },
  epoch: number,
  retried: <T>(step: () => Promise<T>) => Promise<T>,
  mountFrom: string[] = [],
): Promise<string> {
  const layer = { mediaType: WHY_TYPE, digest: digestOf(why.bytes), size: why.bytes.length };
  for (const [bytes, digest] of [
    [EMPTY_BYTES, EMPTY_CONFIG.digest],
    [why.bytes, layer.digest],
  ] as const)
    await retried(async () => {
      if (!(await session.hasBlob(digest)))
        await session.uploadBlob({ bytes }, digest, undefined, undefined, mountFrom);
    });
  const manifest = whyManifest(subject, layer, why.title, epoch);
  let indexed = false;
  const digest = await retried(() =>
    session.putManifest(digestOf(manifest), MEDIA.ociManifest, manifest, (h) => {
      indexed = h.get("oci-subject") === subject.digest;
    }),
  );
  if (indexed) return digest;
  const entry: Descriptor = {
    mediaType: MEDIA.ociManifest,
    digest,
    size: manifest.length,
    artifactType: WHY_TYPE,
  };
  await retried(async () => {
    const listed = await fallbackEntries(session, subject.digest);
    if (listed.some((d) => d.digest === digest)) return;
    const index = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests: [...listed, entry] }),
    );
    await session.putManifest(fallbackTag(subject.digest), MEDIA.ociIndex, index);
  });
  return digest;
}

/**
 * The .why attached to the manifest `digest` (parsed, and as its text), or undefined when none
 * is; its blob through `cache` when given (pull caches every blob it fetches).
 */
export async function fetchWhy(
  session: RegistrySession,
  digest: string,
  cache?: BlobCache,
): Promise<{ why: Why; text: string } | undefined> {
  const found = (await referrers(session, digest)).filter((d) => d.artifactType === WHY_TYPE);
  const ref = found.at(-1);
  if (!ref) return undefined;
  const got = await session.manifest(ref.digest, MEDIA.ociManifest, ref.digest, ref.size);
  let m: { layers?: Blob[]; subject?: Blob };
  try {
    m = JSON.parse(got.bytes.toString("utf8"));
  } catch {
    throw new UserError(`${session.where}: referrer ${ref.digest} is not JSON`);
  }
  const layer = Array.isArray(m.layers) && m.layers.length === 1 ? m.layers[0]! : undefined;
  if (
    !layer ||
    layer.mediaType !== WHY_TYPE ||
    typeof layer.digest !== "string" ||
    typeof layer.size !== "number" ||
    m.subject?.digest !== digest
  )
    throw new UserError(`${session.where}: referrer ${ref.digest} is not a .why of this image`);
  if (layer.size > MAX_WHY_BYTES)
    throw new UserError(`${session.where}: the .why is too large (${layer.size} bytes)`);
  const what = `blob ${layer.digest}`;
  let bytes: Buffer;
  if (cache) bytes = await readFile(await session.blob(layer, cache));
  else {
    const res = await session.fetch(`/blobs/${layer.digest}`, { what, size: layer.size });
    if (!res.ok) throw await statusError(res, `cannot fetch ${what}`, session.where);
    bytes = await readCapped(res, layer.size, what, session.where);
  }
  verifyDigest(bytes, layer.digest, `${session.where}: ${what}`);
  const text = bytes.toString("utf8");
  return { why: parseWhy(text, `${session.where}: .why ${layer.digest}`), text };
}

/** The listing `inspect docker://` prints: the header, then each path and why it is in. */
export function formatRemoteWhy(r: { where: string; digest: string; why: Why }): string {
  const h = r.why.header;
  const lines = [
    `${r.where}@${r.digest}: ${h.format}${h.compressor ? `, ${h.compressor}` : ""}${h.imageSha256 ? `; image sha256 ${h.imageSha256}` : ""}`,
  ];
  for (const [path, why] of r.why.reasons) lines.push(`/${printable(path)}  # ${printable(why)}`);
  for (const m of r.why.missing)
    lines.push(`${printable(m)}  # looked up in the trace, not in the image: nothing kept`);
  return lines.join("\n");
}
