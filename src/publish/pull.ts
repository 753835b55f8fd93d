/**
 * Pulls an image pushed in slimroot's form back to a file: the platform's manifest (through
 * an index), its one layer into the blob cache (verified by digest, not fetched again when
 * the cache has it), then into the output through src/output, verified again as it is copied.
 * `pull -o FILE` writes the .why push attached (provenance.ts) as FILE.why in the same batch,
 * checked against FILE, so the file and its .why appear together, as build writes them.
 */

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { openVerified, verifyDigest } from "../image/digest.js";
import { type Descriptor, MEDIA, readManifest } from "../image/manifest.js";
import { selectFromIndex } from "../image/platform.js";
import { BlobCache } from "../image/registry/blob-cache.js";
import { RegistrySession } from "../image/registry/session.js";
import type { Platform } from "../image/types.js";
import { type FileToWrite, writeFileAtomically, writeFilesAtomically } from "../output/atomic.js";
import { whyPath } from "../output/output.js";
import { fileSha256, type Why } from "../output/why.js";
import { cacheRoot } from "../util/cache-dir.js";
import { UserError } from "../util/errors.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";
import { ARTIFACT_TYPE, CONFIG_TYPE, formatOfMediaType, KERNEL_CONFIG_TYPE } from "./form.js";
import { fetchWhy } from "./provenance.js";

export interface PullFileOptions {
  insecure?: boolean;
  platform: Platform;
  cacheDir?: string;
  progress?: (p: { done: number; total: number }) => void;
  /** pullToTemp: pull the kernel the image names too. */
  withKernel?: boolean;
  /** A kernel's build config, when its image carries one, goes here. */
  kernelConfig?: string;
  /** pull -o: the attached .why goes to OUTPUT.why (an old one there, with no .why attached, is removed). */
  why?: boolean;
}

export interface PulledFile {
  /** The image manifest's digest, and the layer's. */
  digest: string;
  layer: string;
  /** Every layer, in order (a layered initramfs has several). */
  layers: string[];
  format: string;
  /** Whether the .why push attached was written beside the file (PullFileOptions.why). */
  why: boolean;
  bytes: number;
  /** The kernel the image's config names (push --kernel), as a reference by digest. */
  kernel?: string;
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
  const layer = m.layers[0];
  const format = layer?.mediaType ? formatOfMediaType(layer.mediaType) : undefined;
  // A kernel may carry its build config as a second layer; a layered initramfs is several
  // archives of one media type (build --layers); nothing else has more than one.
  const configLayer =
    format === "kernel" && m.layers[1]?.mediaType === KERNEL_CONFIG_TYPE ? m.layers[1] : undefined;
  const parts = format === "initramfs" && m.layers.every((l) => l.mediaType === layer!.mediaType);
  if (!layer || !format || (!parts && m.layers.length !== (configLayer ? 2 : 1)))
    throw new UserError(
      `${where}: a slimroot image has one layer of a slimroot media type (an initramfs: one or its parts); this one does not`,
    );
  const layers = parts ? m.layers : [layer];
  const cache = new BlobCache(o.cacheDir ?? cacheRoot());
  const { kernel, imageSha256 } = await configOf(session, m.config, cache);
  // Each layer into the cache (a part another image brought is not fetched again), then the
  // file: the layers one after another, each verified again as it is copied.
  const total = layers.reduce((n, l) => n + l.size, 0);
  let done = 0;
  o.progress?.({ done, total });
  const cached: string[] = [];
  for (const l of layers)
    cached.push(
      await session.blob(l, cache, undefined, (n) => {
        done += n;
        o.progress?.({ done, total });
      }),
    );
  const joined = async function* () {
    for (const [i, l] of layers.entries())
      yield* await openVerified(cached[i]!, l.digest, `${where}: layer ${l.digest}`);
  };
  const attached = o.why ? await fetchWhy(session, got.digest, cache) : undefined;
  const recorded = attached?.why.header.imageSha256;
  const files: FileToWrite[] = [{ target: output, source: Readable.from(joined()), mode: 0o644 }];
  if (attached) files.push({ target: whyPath(output), source: Readable.from([attached.text]), mode: 0o644 });
  const [bytes] = await writeFilesAtomically(files, async ([tmp]) => {
    // One layer is the file (its digest was checked as it was copied); parts are hashed joined.
    const sha = layers.length === 1 ? layer.digest.slice("sha256:".length) : await fileSha256(tmp!);
    // A layered initramfs's parts joined are the file build wrote: its .why's sha256 says so.
    if (layers.length > 1 && imageSha256 && sha !== imageSha256)
      throw new UserError(
        `${where}: its layers joined are not the image its config names (sha256 ${imageSha256})`,
      );
    if (recorded !== undefined && recorded !== sha)
      throw new UserError(
        `${where}: the .why attached to ${got.digest} was written for another image (sha256 ${recorded.slice(0, 12)}...)`,
      );
  });
  // The file replaced had its own .why, which describes it, not this one.
  if (o.why && !attached) await rm(whyPath(output), { force: true });
  if (configLayer && o.kernelConfig) {
    const path = await session.blob(configLayer, cache);
    await writeFileAtomically(
      o.kernelConfig,
      await openVerified(path, configLayer.digest, `${where}: layer ${configLayer.digest}`),
    );
  }
  return {
    digest: got.digest,
    layer: layer.digest,
    layers: layers.map((l) => l.digest),
    format,
    bytes: bytes!,
    why: Boolean(attached),
    ...(kernel ? { kernel: `docker://${session.ref.registry}/${session.ref.repository}@${kernel}` } : {}),
  };
}

/** `inspect docker://REF`: the image manifest's digest and the .why attached to it. */
export async function remoteWhy(
  ref: string,
  o: { insecure?: boolean; platform: Platform },
): Promise<{ where: string; digest: string; why: Why }> {
  const session = await RegistrySession.open(ref, { insecure: Boolean(o.insecure) });
  const { digest } = await resolveImage(session, o.platform);
  const found = await fetchWhy(session, digest);
  if (!found)
    throw new UserError(
      `${session.where}: no .why is attached to ${digest} (pushed without one beside the file)`,
    );
  return { where: session.where, digest, why: found.why };
}

/**
 * From the config: its `kernel` (push --kernel), the kernel manifest's digest in the same
 * repository, and the sha256 of the file its `.why` header records.
 */
async function configOf(
  session: RegistrySession,
  config: Descriptor,
  cache: BlobCache,
): Promise<{ kernel?: string; imageSha256?: string }> {
  if (config.mediaType !== CONFIG_TYPE) return {};
  if (config.size > MAX_CONFIG) throw new UserError(`${session.where}: config ${config.digest} is too large`);
  const path = await session.blob(config, cache);
  const text = (await readFile(path)).toString("utf8");
  verifyDigest(Buffer.from(text), config.digest, `${session.where}: config ${config.digest}`);
  let doc: { kernel?: { digest?: unknown }; why?: { imageSha256?: unknown } };
  try {
    doc = JSON.parse(text);
  } catch {
    throw new UserError(`${session.where}: config ${config.digest} is not JSON`);
  }
  const sha = doc.why?.imageSha256;
  const imageSha256 = typeof sha === "string" && /^[0-9a-f]{64}$/.test(sha) ? sha : undefined;
  const digest = doc.kernel?.digest;
  if (digest === undefined) return imageSha256 ? { imageSha256 } : {};
  if (typeof digest !== "string" || !/^sha256:[0-9a-f]{64}$/.test(digest))
    throw new UserError(`${session.where}: config ${config.digest}: kernel is not a digest`);
  return { kernel: digest, ...(imageSha256 ? { imageSha256 } : {}) };
}

/** A slimroot config is a few KiB; more is not one push wrote. */
const MAX_CONFIG = 1 << 20;

/**
 * Pulls `ref` into a private temp directory, for `run docker://...`: the VM may write to a
 * disk image, and those writes must touch neither the cache nor a file of the user's.
 * With `withKernel`, the kernel the image's config names is pulled beside it (`kernel`).
 * `remove` deletes it (a signal's handler does too).
 */
export async function pullToTemp(
  ref: string,
  o: PullFileOptions,
): Promise<{ path: string; pulled: PulledFile; kernel?: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "slimroot-pulled-"));
  trackTempPath(dir);
  const remove = async () => {
    await rm(dir, { recursive: true, force: true });
    untrackTempPath(dir);
  };
  try {
    const path = join(dir, "image");
    const pulled = await pullFile(ref, path, o);
    if (!o.withKernel || !pulled.kernel) return { path, pulled, remove };
    // vmlinuz-R with config-R beside it: the pair run reads a kernel file's config from.
    const kernel = join(dir, "vmlinuz-pulled");
    const k = await pullFile(pulled.kernel, kernel, { ...o, kernelConfig: join(dir, "config-pulled") });
    if (k.format !== "kernel")
      throw new UserError(`${pulled.kernel}: the kernel the image names is a ${k.format} image`);
    return { path, pulled, kernel, remove };
  } catch (err) {
    await remove();
    throw err;
  }
}
