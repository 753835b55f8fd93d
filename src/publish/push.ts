/**
 * Pushes slimroot images to a registry in slimroot's form (form.ts): blobs first (those the
 * repository already holds are skipped), the tag last, so a push stopped at any point leaves
 * the tag as it was. Several files (one per architecture) go under one tag as an image index.
 */
import { readFile, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  type Artifact,
  artifactArch,
  describe,
  identify,
  type KernelArtifact,
} from "../artifact/identify.js";
import { digestOf } from "../image/digest.js";
import { MEDIA } from "../image/manifest.js";
import { parseRepository } from "../image/registry/reference.js";
import { type BlobSource, IntegrityError, RegistrySession } from "../image/registry/session.js";
import { readManifest as readKernelManifest } from "../kernel/manifest.js";
import { whyPath } from "../output/output.js";
import {
  checkWhyImage,
  fileSha256,
  readWhy,
  type WhyHeader,
  WhyMissing,
  type WhyPart,
} from "../output/why.js";
import { EnvironmentError, UserError } from "../util/errors.js";
import { composeImage } from "./consumer.js";
import {
  type Blob,
  CONFIG_TYPE,
  imageIndex,
  imageManifest,
  KERNEL_CONFIG_TYPE,
  layerMediaType,
  type PartBlob,
  slimrootConfig,
} from "./form.js";
import { FORMS, SLIMROOT_FORM } from "./forms.js";
import { pushWhy } from "./provenance.js";

export interface PushOptions {
  insecure?: boolean;
  /** SOURCE_DATE_EPOCH: the created annotation. */
  epoch: number;
  /** The architecture of a file whose own cannot be read here (an erofs image). */
  architecture?: string;
  /** The forms to write (--as): slimroot (the tag itself), or a consumer's (TAG-name). */
  forms?: string[];
  /** Kernel files (--kernel), one per architecture, for the forms that carry the kernel. */
  kernels?: string[];
  /** urunc: the VMM to name. */
  hypervisor?: string;
  /**
   * Repositories on the same registry that may hold the blobs already (e.g. where the kernel was
   * pushed): the registry is asked to mount each blob from them before any byte is sent.
   */
  mountFrom?: string[];
  /** Bytes sent so far of those to send (skipped blobs count as sent). */
  progress?: (p: { done: number; total: number }) => void;
  /** A line the user should read though the push goes on (a file with no .why beside it). */
  warn?: (line: string) => void;
}

export interface PushResult {
  /** The digest the tag now names (the manifest's, or the index's). */
  digest: string;
  /** Each file's manifest digest and architecture (the first form's). */
  manifests: { file: string; digest: string; architecture: string }[];
  /** Each tag pushed, one per form. */
  tags: { form: string; tag: string; digest: string }[];
}

interface Prepared {
  file: string;
  artifact: Artifact;
  /** A kernel's build config, its second layer. */
  kernelConfig?: { file: string; blob: Blob };
  architecture: string;
  config: Buffer;
  layer: Blob;
  /** A layered initramfs: its archives, each a layer (the file, read at their offsets). */
  parts?: (PartBlob & { offset: number })[];
  manifest: Buffer;
}

/** What one file becomes: identified, its .why header read, its manifest composed. */
async function prepare(
  file: string,
  o: PushOptions,
  kernels = new Map<string, Blob>(),
  kernelConfig?: string,
): Promise<Prepared> {
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
    // A kernel from `kernel build` has none; anything slimroot builds does, and without it the
    // image travels with no provenance and a --layers build as one layer (its parts are listed
    // only there): a file copied without its .why, or pulled by an older slimroot.
    if (a.kind !== "kernel")
      o.warn?.(
        `${file}: no ${basename(whyPath(file))} beside it: pushed as one layer, with no provenance (inspect --why will show nothing)`,
      );
  }
  const config = Buffer.from(JSON.stringify(slimrootConfig(a, architecture, why, kernels.get(architecture))));
  const configBlob = { mediaType: CONFIG_TYPE, digest: digestOf(config), size: config.length };
  const layer = { mediaType, digest: `sha256:${hex}`, size: a.bytes };
  const parts =
    why?.parts && a.kind === "initramfs" ? await partBlobs(file, why.parts, mediaType, a.bytes) : undefined;
  const kc = kernelConfig
    ? {
        mediaType: KERNEL_CONFIG_TYPE,
        digest: `sha256:${await fileSha256(kernelConfig)}`,
        size: (await stat(kernelConfig)).size,
      }
    : undefined;
  return {
    file,
    artifact: a,
    architecture,
    config,
    layer,
    ...(kc && kernelConfig ? { kernelConfig: { file: kernelConfig, blob: kc } } : {}),
    ...(parts ? { parts } : {}),
    manifest: imageManifest(file, configBlob, parts?.map(({ offset: _, ...b }) => b) ?? layer, epoch, kc),
  };
}

/**
 * A layered initramfs (build --layers) as its parts: each archive the .why lists, at its offset
 * in the file, hashed again here (the .why's sha256 of the whole was checked, not each part's).
 */
async function partBlobs(
  file: string,
  parts: WhyPart[],
  mediaType: string,
  size: number,
): Promise<(PartBlob & { offset: number })[]> {
  const total = parts.reduce((n, p) => n + p.bytes, 0);
  if (total !== size)
    throw new UserError(`${file}: its .why lists parts of ${total} bytes in all; the file has ${size}`);
  const out: (PartBlob & { offset: number })[] = [];
  let offset = 0;
  for (const p of parts) {
    const hex = await fileSha256(file, { start: offset, bytes: p.bytes });
    if (hex !== p.sha256) throw new UserError(`${file}: part ${p.name} is not the one its .why lists`);
    out.push({ mediaType, digest: `sha256:${hex}`, size: p.bytes, part: p.name, offset });
    offset += p.bytes;
  }
  return out;
}

/** One manifest to push: its blobs, and the .why to attach to it. */
interface Composed {
  file: string;
  architecture: string;
  manifest: Buffer;
  blobs: { source: BlobSource; digest: string; size: number }[];
  why?: Buffer;
}

/** slimroot's own form of a prepared file, as a manifest with its blobs. */
function ownForm(p: Prepared, why: Buffer | undefined): Composed {
  return {
    file: p.file,
    architecture: p.architecture,
    manifest: p.manifest,
    blobs: [
      ...(p.parts ?? [{ ...p.layer, offset: 0 }]).map((b) => ({
        source: { file: p.file, size: b.size, offset: b.offset },
        digest: b.digest,
        size: b.size,
      })),
      { source: { bytes: p.config }, digest: digestOf(p.config), size: p.config.length },
      ...(p.kernelConfig
        ? [{ source: { file: p.kernelConfig.file, size: p.kernelConfig.blob.size }, ...p.kernelConfig.blob }]
        : []),
    ],
    ...(why ? { why } : {}),
  };
}

/** The kernels given with --kernel, one per architecture. */
async function kernelsByArch(files: string[]): Promise<Map<string, KernelArtifact>> {
  const out = new Map<string, KernelArtifact>();
  for (const file of files) {
    // A kernel directory (kernel fetch, kernel build) as run --kernel takes it: its kernel and config.
    const dir = (await stat(file).catch(() => undefined))?.isDirectory()
      ? await readKernelManifest(file)
      : undefined;
    const path = dir ? join(file, dir.kernel) : file;
    const k = await identify(path, { embedded: false });
    if (k.kind !== "kernel") throw new UserError(`--kernel ${file}: ${describe(k)}, not a kernel`);
    const arch = artifactArch(k);
    if (out.has(arch)) throw new UserError(`--kernel ${file}: a second ${arch} kernel; one per architecture`);
    out.set(arch, dir?.config && k.kind === "kernel" ? { ...k, config: join(file, dir.config) } : k);
  }
  return out;
}

/** Pushes `files` to `ref` (a tag) in each form asked for; returns what each tag names now. */
export async function pushFiles(files: string[], ref: string, given: PushOptions): Promise<PushResult> {
  const session = await RegistrySession.open(ref, { insecure: Boolean(given.insecure), push: true });
  const { where } = session;
  const mountFrom = (given.mountFrom ?? []).map((r) =>
    parseRepository(r, session.ref.registry, "--mount-from"),
  );
  const o = { ...given, mountFrom };
  if (session.ref.digest) throw new UserError(`${where}: push to a tag, not a digest`);
  const tag = session.ref.tag ?? "latest";
  if (files.length === 0) throw new UserError(`${where}: no file to push`);
  const forms = o.forms?.length ? o.forms : [SLIMROOT_FORM];

  const kernels = await kernelsByArch(o.kernels ?? []);
  // slimroot's form names the kernel pushed with it (TAG-kernel) in each image's config.
  const ownKernels: Prepared[] = [];
  if (forms.includes(SLIMROOT_FORM))
    for (const k of kernels.values()) ownKernels.push(await prepare(k.path, o, undefined, k.config));
  const kernelRefs = new Map(
    ownKernels.map((k) => [
      k.architecture,
      { mediaType: MEDIA.ociManifest, digest: digestOf(k.manifest), size: k.manifest.length },
    ]),
  );
  const prepared: Prepared[] = [];
  for (const file of files) prepared.push(await prepare(file, o, kernelRefs));
  const seen = new Map<string, string>();
  for (const p of prepared) {
    const other = seen.get(p.architecture);
    if (other)
      throw new UserError(
        `${p.file}: ${p.architecture} like ${other}; one file per architecture under a tag`,
      );
    seen.set(p.architecture, p.file);
  }

  // Every form of every file is composed before anything is sent: a form that refuses a file
  // does so before the registry sees a byte.
  const tags: { form: string; tag: string; images: Composed[] }[] = [];
  for (const form of forms) {
    const images: Composed[] = [];
    for (const p of prepared) {
      const why = await whyBytes(p.file);
      if (form === SLIMROOT_FORM) {
        images.push(ownForm(p, why));
        continue;
      }
      const kernel = kernels.get(p.architecture);
      const input = {
        file: p.file,
        artifact: p.artifact,
        architecture: p.architecture,
        ...(kernel ? { kernel } : {}),
        ...(o.hypervisor ? { hypervisor: o.hypervisor } : {}),
      };
      const c = await composeImage(FORMS[form]!.compose(input), p.architecture, basename(p.file), o.epoch);
      images.push({ file: p.file, architecture: p.architecture, ...c, ...(why ? { why } : {}) });
    }
    tags.push({ form, tag: form === SLIMROOT_FORM ? tag : `${tag}-${form}`, images });
  }

  // The kernel's tag moves first: no image's config names a kernel the repository lacks.
  if (ownKernels.length)
    tags.unshift({
      form: KERNEL_TAG,
      tag: `${tag}-${KERNEL_TAG}`,
      images: ownKernels.map((k) => ownForm(k, undefined)),
    });

  const blobs = new Map<string, Composed["blobs"][number]>();
  for (const t of tags) for (const i of t.images) for (const b of i.blobs) blobs.set(b.digest, b);
  const total = [...blobs.values()].reduce((n, b) => n + b.size, 0);
  let done = 0;
  const tick = (n: number) => {
    done += n;
    o.progress?.({ done, total });
  };
  o.progress?.({ done, total });
  // uploadBlob retries its own requests, resumes where the registry stopped, and mounts a
  // blob from another repository of the registry when it can.
  for (const b of blobs.values()) {
    if (await retried(() => session.hasBlob(b.digest))) tick(b.size);
    else await session.uploadBlob(b.source, b.digest, tick, undefined, o.mountFrom);
  }

  // Each tag moves last for its form, in one PUT: before it, the registry holds only
  // unreferenced blobs and untagged manifests, and the tag still names what it named.
  const result: PushResult = { digest: "", manifests: [], tags: [] };
  for (const t of tags) {
    const digest = await pushTag(session, t.tag, t.images, o);
    result.tags.push({ form: t.form, tag: t.tag, digest });
    if (!result.digest && t.form !== KERNEL_TAG) {
      result.digest = digest;
      result.manifests = t.images.map((i) => ({
        file: i.file,
        digest: digestOf(i.manifest),
        architecture: i.architecture,
      }));
    }
  }
  return result;
}

/** The .why beside `file`, as it is, when there is one (prepare checked that it is this file's). */
async function whyBytes(file: string): Promise<Buffer | undefined> {
  try {
    await readWhy(file);
  } catch (err) {
    if (err instanceof WhyMissing) return undefined;
    throw err;
  }
  return readFile(whyPath(file));
}

/** Puts the images' manifests (one: under the tag; several: by digest, then an index), each .why after its image. */
async function pushTag(
  session: RegistrySession,
  tag: string,
  images: Composed[],
  o: PushOptions,
): Promise<string> {
  const attach = async (i: Composed, digest: string) => {
    if (i.why)
      await pushWhy(
        session,
        { mediaType: MEDIA.ociManifest, digest, size: i.manifest.length },
        { bytes: i.why, title: `${basename(i.file)}.why` },
        o.epoch,
        retried,
        o.mountFrom,
      );
  };
  if (images.length === 1) {
    const i = images[0]!;
    // The .why goes first (it refers to the manifest by digest), so the tag never names an image without it.
    await retried(() => session.putManifest(digestOf(i.manifest), MEDIA.ociManifest, i.manifest));
    await attach(i, digestOf(i.manifest));
    return retried(() => session.putManifest(tag, MEDIA.ociManifest, i.manifest));
  }
  const entries = [];
  for (const i of images) {
    const digest = await retried(() =>
      session.putManifest(digestOf(i.manifest), MEDIA.ociManifest, i.manifest),
    );
    await attach(i, digest);
    entries.push({
      manifest: { mediaType: MEDIA.ociManifest, digest, size: i.manifest.length },
      architecture: i.architecture,
      artifactType: artifactTypeOf(i.manifest),
    });
  }
  const index = imageIndex(entries, o.epoch);
  return retried(() => session.putManifest(tag, MEDIA.ociIndex, index));
}

function artifactTypeOf(manifest: Buffer): string | undefined {
  return (JSON.parse(manifest.toString("utf8")) as { artifactType?: string }).artifactType;
}

/** The suffix of the tag the kernel given with --kernel goes under, in slimroot's form. */
const KERNEL_TAG = "kernel";

/** Attempts after the first when the registry or the network fails (5xx, a dropped connection). */
const RETRIES = 2;
const BACKOFF_MS = 1000;

/**
 * Runs `step` again after 1 s, then 2 s, when it fails for the environment's reason: each step
 * (a manifest PUT, a HEAD) is whole by itself, so starting it again is safe. A refusal
 * (4xx, a bad file) or a registry that stored other bytes than those sent is not retried.
 */
async function retried<T>(step: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await step();
    } catch (err) {
      if (!(err instanceof EnvironmentError) || err instanceof IntegrityError || attempt >= RETRIES)
        throw err;
      await sleep(BACKOFF_MS * 2 ** attempt);
    }
  }
}
