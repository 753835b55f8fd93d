import { readFile } from "node:fs/promises";
import { cacheRoot } from "../../util/cache-dir.js";
import { UserError } from "../../util/errors.js";
import { openVerified, verifyDigest } from "../digest.js";
import { decompressLayer } from "../layer-stream.js";
import { type Descriptor, imageConfigFromJson, type ManifestDoc, MEDIA, readManifest } from "../manifest.js";
import { selectFromIndex } from "../platform.js";
import { readDocument } from "../schemas.js";
import type { Image, Layer, Platform } from "../types.js";
import { BlobCache } from "./blob-cache.js";
import { MAX_MANIFEST, RegistrySession } from "./session.js";

export interface PullOptions {
  /** Talk plain http instead of https. */
  insecure?: boolean;
  platform: Platform;
  /** Cache root; blobs go to `<cacheDir>/blobs/sha256/<hex>`. Default: cacheRoot(). */
  cacheDir?: string;
  progress?: (p: { done: number; total: number }) => void;
}

const ACCEPT = [MEDIA.ociManifest, MEDIA.ociIndex, MEDIA.dockerManifest, MEDIA.dockerList].join(", ");
const IMAGE_CONFIG_TYPES = new Set([
  "application/vnd.oci.image.config.v1+json",
  "application/vnd.docker.container.image.v1+json",
]);
/** Config blobs are small JSON, as manifests are. */
const MAX_CONFIG = 16 << 20;
const PARALLEL = 4;
/** Indexes can nest (an index pointing at an index); this is plenty. */
const MAX_INDEX_DEPTH = 3;

/**
 * Pulls `ref` (`[docker://]host/repo[:tag][@digest]`) for `opts.platform` into the blob
 * cache and returns it as an Image whose layers open the cached, verified blobs.
 * The Image's `ref` carries the docker:// prefix; its `digest` is that of the platform's
 * image manifest (not of an index above it): it names exactly the layers returned.
 */
export async function pullImage(ref: string, opts: PullOptions): Promise<Image> {
  const session = await RegistrySession.open(ref, { insecure: Boolean(opts.insecure) });
  const { where, ref: r } = session;
  const cache = new BlobCache(opts.cacheDir ?? cacheRoot());

  // Resolve tag or digest, then walk down indexes to the platform's image manifest.
  let { manifest, digest } = await fetchManifest(r.digest ?? r.tag ?? "latest", r.digest, MAX_MANIFEST);
  let platform: Platform | undefined;
  for (let depth = 0; manifest.kind === "index"; depth++) {
    if (depth >= MAX_INDEX_DEPTH) throw new UserError(`${where}: image indexes nested too deeply`);
    const entry = selectFromIndex(manifest.doc.manifests, opts.platform, where);
    platform = entry.platform;
    ({ manifest, digest } = await fetchManifest(entry.digest, entry.digest, entry.size ?? MAX_MANIFEST));
  }
  const image = manifest.doc;
  if (image.config.mediaType && !IMAGE_CONFIG_TYPES.has(image.config.mediaType)) {
    throw new UserError(`${where}: not a container image (config type ${image.config.mediaType})`);
  }
  for (const layer of image.layers) {
    if (layer.mediaType?.includes("encrypted")) {
      throw new UserError(`${where}: layer ${layer.digest} is encrypted (${layer.mediaType}); not supported`);
    }
  }

  // Config first (small), then layers in parallel; the same digest is fetched only once.
  const configJson = await readConfig(image.config);
  const fromConfig = imageConfigFromJson(configJson, `${where}: config`);
  const have = fromConfig.platform ?? platform;
  // A single-platform image must still be for the platform we build for.
  if (have && !platform) selectFromIndex([{ digest, platform: have }], opts.platform, where);

  const unique = [...new Map(image.layers.map((l) => [l.digest, l])).values()];
  const total = unique.reduce((sum, l) => sum + l.size, 0);
  let done = 0;
  const tick = (n: number) => {
    done += n;
    opts.progress?.({ done, total });
  };
  opts.progress?.({ done, total });
  const paths = new Map<string, string>();
  await runLimited(unique, PARALLEL, async (layer, signal) => {
    paths.set(layer.digest, await fetchBlob(layer, signal, tick));
  });

  const layers: Layer[] = image.layers.map((l) => {
    const name = `${l.digest} of ${where}`;
    const file = paths.get(l.digest)!;
    // Verified again as it is read: the cache may change between the pull and the build.
    return {
      name,
      open: async () => decompressLayer(await openVerified(file, l.digest, `layer ${name}`), name),
    };
  });
  const pulled: Image = { ref: where, digest, config: fromConfig.config, layers };
  if (have) pulled.platform = have;
  return pulled;

  async function fetchManifest(
    reference: string,
    expect: string | undefined,
    size: number,
  ): Promise<{ manifest: ManifestDoc; digest: string }> {
    const got = await session.manifest(reference, ACCEPT, expect, size);
    return {
      manifest: readManifest(got.bytes, `${where}: manifest ${reference}`, got.type),
      digest: got.digest,
    };
  }

  function fetchBlob(d: Descriptor, signal: AbortSignal | undefined, onBytes: (n: number) => void) {
    return session.blob(d, cache, signal, onBytes);
  }

  async function readConfig(d: Descriptor) {
    if (d.size > MAX_CONFIG) throw new UserError(`${where}: image config is too large (${d.size} bytes)`);
    const file = await fetchBlob(d, undefined, () => {});
    const what = `${where}: image config ${d.digest}`;
    const bytes = await readFile(file);
    verifyDigest(bytes, d.digest, what);
    return readDocument("imageConfig", bytes, what);
  }
}

/**
 * Runs `fn` over `items` with at most `limit` at once. The first failure aborts the others
 * (through the signal) and is thrown once every task has settled, so nothing is left running.
 */
async function runLimited<T>(
  items: T[],
  limit: number,
  fn: (item: T, signal: AbortSignal) => Promise<void>,
): Promise<void> {
  const controller = new AbortController();
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item, controller.signal);
      } catch (err) {
        failure ??= { err };
        controller.abort();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.err;
}
