/**
 * slimroot's own form of an image in an OCI registry (docs/push.md is its spec): an OCI image
 * manifest with artifactType ARTIFACT_TYPE, a small JSON config blob saying what `run` needs,
 * and the file itself as its one layer, with a media type naming its exact format. Everything
 * here is a pure function of the file's bytes, what identify says about it, its .why header
 * and SOURCE_DATE_EPOCH: the same input pushed twice gives the same manifest digest.
 */
import { basename } from "node:path";
import type { AppConfig } from "../appconfig/appconfig.js";
import type { Artifact } from "../artifact/identify.js";
import { describe } from "../artifact/identify.js";
import { MEDIA } from "../image/manifest.js";
import { KERNEL_REQUIREMENTS } from "../kernel/requirements.js";
import type { WhyHeader } from "../output/why.js";
import { UserError } from "../util/errors.js";

export const ARTIFACT_TYPE = "application/vnd.slimroot.image.v1";
export const CONFIG_TYPE = "application/vnd.slimroot.config.v1+json";
/** A kernel's build config, the second layer of a kernel image that has one (run reads it). */
export const KERNEL_CONFIG_TYPE = "application/vnd.slimroot.kernel-config.v1";
const PREFIX = "application/vnd.slimroot.";
export const ANNOTATION = {
  created: "org.opencontainers.image.created",
  title: "org.opencontainers.image.title",
  /** A layered initramfs's part: "layer N", "added", "slimroot" (docs/push.md). */
  part: "vnd.slimroot.initramfs.part",
} as const;

/** The config blob's content (docs/push.md lists each field). */
export interface SlimrootConfig {
  /** OCI platform terms, as in an image index. */
  os: "linux";
  architecture: string;
  /** initramfs | ext4 | erofs | squashfs | kernel */
  format: string;
  /** initramfs: gzip | zstd | xz | lz4 | none */
  compression?: string;
  /** kernel: bzImage | elf | arm64-image; and whether an app is built into it. */
  kernelFormat?: string;
  embedded?: boolean;
  /** The run settings the image carries (its etc/slimroot/app.conf), when its tool could read them. */
  app?: AppConfig;
  /** What a kernel needs to boot this image under slimroot's init (src/kernel/requirements.ts). */
  kernelNeeds: { need: string; options: readonly string[] }[];
  /** The header of the .why beside the file (what build recorded), when there is one. */
  why?: WhyHeader;
  /**
   * The kernel pushed with it (push --kernel): the descriptor of that kernel's manifest, in
   * slimroot's form, in the same repository (tagged TAG-kernel). `run docker://` boots it.
   */
  kernel?: Blob;
}

/** The layer's media type: one per format, so a reader knows the bytes without opening them. */
export function layerMediaType(a: Artifact): string {
  switch (a.kind) {
    case "initramfs":
      return `${PREFIX}initramfs.v1${a.compression === "none" ? "" : `+${a.compression}`}`;
    case "disk":
      return `${PREFIX}${a.identity.format}.v1`;
    case "kernel":
      return `${PREFIX}kernel.v1`;
    case "list":
      throw new UserError(
        `${a.path}: ${describe(a)}; push the archive built from it (slimroot build -o FILE)`,
      );
    case "snapshot":
      throw new UserError(`${a.path}: ${describe(a)}; push the image it was made from`);
  }
}

/** The format a layer media type names back (pull and run read it), or undefined if not slimroot's. */
export function formatOfMediaType(mediaType: string): string | undefined {
  const m = /^application\/vnd\.slimroot\.(initramfs|ext4|erofs|squashfs|kernel)\.v1(?:\+\w+)?$/.exec(
    mediaType,
  );
  return m?.[1];
}

function kernelNeeds(a: Artifact, arch: string): SlimrootConfig["kernelNeeds"] {
  if (a.kind === "kernel") return [];
  const diskRow = a.kind === "disk" ? `${a.identity.format} disk images` : undefined;
  return KERNEL_REQUIREMENTS.filter(
    (r) => (!r.arch || r.arch === arch) && (!r.need.endsWith(" disk images") || r.need === diskRow),
  )
    .filter((r) => a.kind === "disk" || r.need !== "disk images and --volume")
    .map((r) => ({ need: r.need, options: r.options }));
}

/** The config blob for `a` (architecture `arch`, its .why header if any). */
export function slimrootConfig(
  a: Artifact,
  arch: string,
  why: WhyHeader | undefined,
  kernel?: Blob,
): SlimrootConfig {
  const app =
    a.kind === "kernel"
      ? typeof a.embedded === "object"
        ? a.embedded.app
        : undefined
      : a.kind === "snapshot"
        ? undefined
        : a.app;
  return {
    os: "linux",
    architecture: arch,
    format: a.kind === "disk" ? a.identity.format : a.kind,
    ...(a.kind === "initramfs" ? { compression: a.compression } : {}),
    ...(a.kind === "kernel" ? { kernelFormat: a.format, embedded: typeof a.embedded === "object" } : {}),
    ...(app ? { app } : {}),
    kernelNeeds: kernelNeeds(a, arch),
    ...(why ? { why } : {}),
    ...(kernel ? { kernel } : {}),
  };
}

/** `org.opencontainers.image.created`: SOURCE_DATE_EPOCH, or the epoch itself (never the clock). */
export function createdAt(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace(/\.000Z$/, "Z");
}

export interface Blob {
  mediaType: string;
  digest: string;
  size: number;
}

/** One archive of a layered initramfs as a layer: its blob and which part it is. */
export interface PartBlob extends Blob {
  part: string;
}

/**
 * The image manifest's bytes: config, the layer (or a layered initramfs's parts, in order, each
 * titled FILE.N and named by its part), annotations.
 */
export function imageManifest(
  file: string,
  config: Blob,
  layer: Blob | PartBlob[],
  epochSeconds: number,
  kernelConfig?: Blob,
): Buffer {
  const title = basename(file);
  const layers = Array.isArray(layer)
    ? layer.map(({ part, mediaType, digest, size }, i) => ({
        mediaType,
        digest,
        size,
        annotations: { [ANNOTATION.title]: `${title}.${i}`, [ANNOTATION.part]: part },
      }))
    : [{ ...layer, annotations: { [ANNOTATION.title]: title } }];
  const doc = {
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    artifactType: ARTIFACT_TYPE,
    config,
    layers: [
      ...layers,
      ...(kernelConfig ? [{ ...kernelConfig, annotations: { [ANNOTATION.title]: "config" } }] : []),
    ],
    annotations: { [ANNOTATION.created]: createdAt(epochSeconds), [ANNOTATION.title]: title },
  };
  return Buffer.from(JSON.stringify(doc));
}

/** An image index over several pushed manifests, one per platform. */
export function imageIndex(
  entries: { manifest: Blob; architecture: string; artifactType?: string | undefined }[],
  epochSeconds: number,
): Buffer {
  // slimroot's own form names its artifactType on the index and each entry; a consumer's
  // container images have none.
  const artifactType = entries[0]?.artifactType;
  const doc = {
    schemaVersion: 2,
    mediaType: MEDIA.ociIndex,
    ...(artifactType ? { artifactType } : {}),
    manifests: entries.map((e) => ({
      ...e.manifest,
      ...(e.artifactType ? { artifactType: e.artifactType } : {}),
      platform: { architecture: e.architecture, os: "linux" },
    })),
    annotations: { [ANNOTATION.created]: createdAt(epochSeconds) },
  };
  return Buffer.from(JSON.stringify(doc));
}
