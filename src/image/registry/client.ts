import { createHash } from "node:crypto";
import { once } from "node:events";
import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { cacheRoot } from "../../util/cache-dir.js";
import { EnvironmentError, UserError } from "../../util/errors.js";
import { decompressLayer } from "../layer-stream.js";
import { type Descriptor, imageConfigFromJson, isIndex, MEDIA } from "../manifest.js";
import { type IndexEntry, selectFromIndex } from "../platform.js";
import type { Image, Layer, Platform } from "../types.js";
import { loadCredentials, RegistryAuth } from "./auth.js";
import { BlobCache, digestHex } from "./blob-cache.js";
import { readCapped, statusError } from "./http.js";
import { displayRef, parseReference } from "./reference.js";

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
/** distribution refuses manifests over 4 MiB; config blobs are small JSON too. */
const MAX_MANIFEST = 4 << 20;
const MAX_CONFIG = 16 << 20;
const PARALLEL = 4;
/** Indexes can nest (an index pointing at an index); this is plenty. */
const MAX_INDEX_DEPTH = 3;

interface Manifest {
  schemaVersion?: number;
  mediaType?: string;
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: IndexEntry[];
}

/**
 * Pulls `ref` (`[docker://]host/repo[:tag][@digest]`) for `opts.platform` into the blob
 * cache and returns it as an Image whose layers open the cached, verified blobs.
 * The Image's `ref` carries the docker:// prefix; its `digest` is that of the platform's
 * image manifest (not of an index above it): it names exactly the layers returned.
 */
export async function pullImage(ref: string, opts: PullOptions): Promise<Image> {
  const where = displayRef(ref);
  const r = parseReference(ref);
  const base = `${opts.insecure ? "http" : "https"}://${r.registry}/v2/${r.repository}`;
  const auth = new RegistryAuth(r.registry, await loadCredentials(r.registry, where), where);
  const scope = `repository:${r.repository}:pull`;
  const cache = new BlobCache(opts.cacheDir ?? cacheRoot());

  // Resolve tag or digest, then walk down indexes to the platform's image manifest.
  let { manifest, digest } = await fetchManifest(r.digest ?? r.tag ?? "latest", r.digest);
  let platform: Platform | undefined;
  for (let depth = 0; isIndex(manifest); depth++) {
    if (depth >= MAX_INDEX_DEPTH) throw new UserError(`${where}: image indexes nested too deeply`);
    if (!Array.isArray(manifest.manifests)) throw new UserError(`${where}: image index has no manifests`);
    const entry = selectFromIndex(manifest.manifests, opts.platform, where);
    digestHex(entry.digest, where);
    platform = entry.platform;
    ({ manifest, digest } = await fetchManifest(entry.digest, entry.digest));
  }
  if (manifest.schemaVersion === 1) {
    throw new UserError(
      `${where}: Docker schema 1 manifests are not supported; re-push the image with a current tool`,
    );
  }
  if (!manifest.config || !Array.isArray(manifest.layers)) {
    throw new UserError(
      `${where}: manifest ${digest} is not an image manifest (${manifest.mediaType ?? "no mediaType"})`,
    );
  }
  if (manifest.config.mediaType && !IMAGE_CONFIG_TYPES.has(manifest.config.mediaType)) {
    throw new UserError(`${where}: not a container image (config type ${manifest.config.mediaType})`);
  }
  for (const layer of manifest.layers) {
    digestHex(layer.digest, where);
    if (layer.mediaType?.includes("encrypted")) {
      throw new UserError(`${where}: layer ${layer.digest} is encrypted (${layer.mediaType}); not supported`);
    }
  }

  // Config first (small), then layers in parallel; the same digest is fetched only once.
  const configJson = await readConfig(manifest.config);
  const fromConfig = imageConfigFromJson(configJson, `${where}: config`);
  const have = fromConfig.platform ?? platform;
  // A single-platform image must still be for the platform we build for.
  if (have && !platform) selectFromIndex([{ digest, platform: have }], opts.platform, where);

  const unique = [...new Map(manifest.layers.map((l) => [l.digest, l])).values()];
  const total = unique.reduce((sum, l) => sum + (l.size ?? 0), 0);
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

  const layers: Layer[] = manifest.layers.map((l) => {
    const name = `${l.digest} of ${where}`;
    const file = paths.get(l.digest)!;
    return { name, open: () => openBlob(file, name) };
  });
  const image: Image = { ref: where, digest, config: fromConfig.config, layers };
  if (have) image.platform = have;
  return image;

  async function fetchManifest(reference: string, expect: string | undefined) {
    const res = await auth.fetch(`${base}/manifests/${reference}`, { headers: { accept: ACCEPT } }, scope);
    if (!res.ok) throw await statusError(res, `cannot fetch manifest ${reference}`, where);
    const bytes = await readCapped(res, MAX_MANIFEST, "manifest", where);
    const got = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    if (expect && got !== expect) {
      throw new UserError(
        `${where}: manifest ${expect} failed verification (its content hashes to ${got}); refusing it`,
      );
    }
    let manifest: Manifest;
    try {
      manifest = JSON.parse(bytes.toString("utf8")) as Manifest;
      if (typeof manifest !== "object" || manifest === null) throw new Error("not an object");
    } catch {
      throw new UserError(`${where}: manifest ${reference} is not valid JSON`);
    }
    // Some registries omit mediaType in the body; the Content-Type header then says it.
    manifest.mediaType ??= res.headers.get("content-type")?.split(";")[0]?.trim() || undefined;
    return { manifest, digest: got };
  }

  async function fetchBlob(d: Descriptor, signal: AbortSignal | undefined, onBytes: (n: number) => void) {
    if (await cache.has(d.digest, d.size, where)) {
      onBytes(d.size ?? 0);
      return cache.path(d.digest, where);
    }
    const res = await auth.fetch(`${base}/blobs/${d.digest}`, { signal: signal ?? null }, scope);
    if (!res.ok) throw await statusError(res, `cannot fetch blob ${d.digest}`, where);
    if (!res.body) throw new EnvironmentError(`${where}: blob ${d.digest} came with no body`);
    const body = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
    return cache.store(d.digest, d.size, body, where, onBytes);
  }

  async function readConfig(d: Descriptor): Promise<object> {
    if ((d.size ?? 0) > MAX_CONFIG)
      throw new UserError(`${where}: image config is too large (${d.size} bytes)`);
    const file = await fetchBlob(d, undefined, () => {});
    try {
      const parsed: unknown = JSON.parse(await readFile(file, "utf8"));
      if (typeof parsed !== "object" || parsed === null) throw new Error("not an object");
      return parsed;
    } catch {
      throw new UserError(`${where}: image config ${d.digest} is not valid JSON`);
    }
  }
}

async function openBlob(file: string, name: string) {
  const stream = createReadStream(file);
  try {
    await once(stream, "open");
  } catch (err) {
    throw new EnvironmentError(`layer ${name}: cannot open cached blob ${file}: ${(err as Error).message}`);
  }
  return decompressLayer(stream, name);
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
