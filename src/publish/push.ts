/**
 * Pushes slimroot images to a registry in slimroot's form (form.ts): blobs first (those the
 * repository already holds are skipped), the tag last, so a push stopped at any point leaves
 * the tag as it was. Several files (one per architecture) go under one tag as an image index.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { artifactArch, identify } from "../artifact/identify.js";
import { digestOf } from "../image/digest.js";
import { MEDIA } from "../image/manifest.js";
import { RegistrySession } from "../image/registry/session.js";
import { checkWhyImage, fileSha256, readWhy, type WhyHeader, WhyMissing } from "../output/why.js";
import { EnvironmentError, UserError } from "../util/errors.js";
import { type Blob, CONFIG_TYPE, imageIndex, imageManifest, layerMediaType, slimrootConfig } from "./form.js";

export interface PushOptions {
  insecure?: boolean;
  /** SOURCE_DATE_EPOCH: the created annotation. */
  epoch: number;
  /** The architecture of a file whose own cannot be read here (an erofs image). */
  architecture?: string;
  /** Bytes sent so far of those to send (skipped blobs count as sent). */
  progress?: (p: { done: number; total: number }) => void;
}

export interface PushResult {
  /** The digest the tag now names (the manifest's, or the index's). */
  digest: string;
  /** Each file's manifest digest and architecture. */
  manifests: { file: string; digest: string; architecture: string }[];
}

interface Prepared {
  file: string;
  architecture: string;
  config: Buffer;
  layer: Blob;
  manifest: Buffer;
}

/** What one file becomes: identified, its .why header read, its manifest composed. */
async function prepare(file: string, o: PushOptions): Promise<Prepared> {
  const { epoch } = o;
  const a = await identify(file);
  const mediaType = layerMediaType(a);
  const unread = a.kind !== "kernel" && !a.arch;
  if (unread && !o.architecture)
    throw new UserError(`${a.noArch ?? `${file}: no architecture`}; say it with --platform linux/ARCH`);
  const architecture = unread ? o.architecture! : artifactArch(a);
  const hex = await fileSha256(file);
  let why: WhyHeader | undefined;
  try {
    const w = await readWhy(file);
    // A disk's .why records no sha256 (mkfs output is checked another way): taken as it is.
    if (w.header.imageSha256 !== undefined) checkWhyImage(w, file, hex);
    why = w.header;
  } catch (err) {
    if (!(err instanceof WhyMissing)) throw err;
  }
  const config = Buffer.from(JSON.stringify(slimrootConfig(a, architecture, why)));
  const configBlob = { mediaType: CONFIG_TYPE, digest: digestOf(config), size: config.length };
  const layer = { mediaType, digest: `sha256:${hex}`, size: a.bytes };
  return { file, architecture, config, layer, manifest: imageManifest(file, configBlob, layer, epoch) };
}

/** Pushes `files` to `ref` (a tag); returns what the tag names now. */
export async function pushFiles(files: string[], ref: string, o: PushOptions): Promise<PushResult> {
  const session = await RegistrySession.open(ref, { insecure: Boolean(o.insecure), push: true });
  const { where } = session;
  if (session.ref.digest) throw new UserError(`${where}: push to a tag, not a digest`);
  const tag = session.ref.tag ?? "latest";
  if (files.length === 0) throw new UserError(`${where}: no file to push`);

  const prepared: Prepared[] = [];
  for (const file of files) prepared.push(await prepare(file, o));
  const seen = new Map<string, string>();
  for (const p of prepared) {
    const other = seen.get(p.architecture);
    if (other)
      throw new UserError(
        `${p.file}: ${p.architecture} like ${other}; one file per architecture under a tag`,
      );
    seen.set(p.architecture, p.file);
  }

  const total = prepared.reduce((n, p) => n + p.layer.size + p.config.length, 0);
  let done = 0;
  const tick = (n: number) => {
    done += n;
    o.progress?.({ done, total });
  };
  o.progress?.({ done, total });
  for (const p of prepared) {
    const sentBefore = done;
    await retried(async () => {
      done = sentBefore; // an upload starts again from its first byte
      if (await session.hasBlob(p.layer.digest)) tick(p.layer.size);
      else await session.uploadBlob({ file: p.file, size: p.layer.size }, p.layer.digest, tick);
    });
    const configDigest = digestOf(p.config);
    await retried(async () => {
      if (!(await session.hasBlob(configDigest))) await session.uploadBlob({ bytes: p.config }, configDigest);
    });
    tick(p.config.length);
  }

  // The tag moves last, in one PUT: before it, the registry holds only unreferenced blobs and
  // untagged manifests, and the tag still names what it named.
  if (prepared.length === 1) {
    const p = prepared[0]!;
    const digest = await retried(() => session.putManifest(tag, MEDIA.ociManifest, p.manifest));
    return { digest, manifests: [{ file: p.file, digest, architecture: p.architecture }] };
  }
  const manifests = [];
  for (const p of prepared) {
    const digest = await retried(() =>
      session.putManifest(digestOf(p.manifest), MEDIA.ociManifest, p.manifest),
    );
    manifests.push({ file: p.file, digest, architecture: p.architecture, size: p.manifest.length });
  }
  const index = imageIndex(
    manifests.map((m) => ({
      manifest: { mediaType: MEDIA.ociManifest, digest: m.digest, size: m.size },
      architecture: m.architecture,
    })),
    o.epoch,
  );
  const digest = await retried(() => session.putManifest(tag, MEDIA.ociIndex, index));
  return { digest, manifests: manifests.map(({ size: _size, ...m }) => m) };
}

/** Attempts after the first when the registry or the network fails (5xx, a dropped connection). */
const RETRIES = 2;
const BACKOFF_MS = 1000;

/**
 * Runs `step` again after 1 s, then 2 s, when it fails for the environment's reason: each step
 * (a blob upload, a manifest PUT) is whole by itself, so starting it again is safe. A refusal
 * (4xx, a bad file) is not retried.
 */
async function retried<T>(step: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await step();
    } catch (err) {
      if (!(err instanceof EnvironmentError) || attempt >= RETRIES) throw err;
      await sleep(BACKOFF_MS * 2 ** attempt);
    }
  }
}
