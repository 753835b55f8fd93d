/**
 * The consumer forms: what `push --as NAME` writes for a runtime that reads an ordinary OCI
 * container image in its own way (docs/push.md, "Consumer forms"). Each form is one module
 * (urunc.ts, flintlock.ts, containerdisk.ts) that says which files go where in the image and
 * which annotations it carries, or refuses in one line what its consumer cannot take; this
 * module turns that into the image (uncompressed tar layers, an OCI image config, the
 * manifest). A fourth consumer is a module and a row in FORMS (forms.ts).
 */
import type { Artifact, KernelArtifact } from "../artifact/identify.js";
import { describe } from "../artifact/identify.js";
import { digestOf } from "../image/digest.js";
import { MEDIA } from "../image/manifest.js";
import type { BlobSource } from "../image/registry/session.js";
import { UserError } from "../util/errors.js";
import { ANNOTATION, createdAt } from "./form.js";
import { partsDigest, TAR_LAYER_TYPE, type TarMember, tarLayer } from "./tar-layer.js";

export const OCI_CONFIG_TYPE = "application/vnd.oci.image.config.v1+json";

/** What a form is given: the pushed file, what it is, and the kernel pushed beside it. */
export interface FormInput {
  file: string;
  artifact: Artifact;
  architecture: string;
  kernel?: KernelArtifact;
  /** urunc: the VMM it names (qemu unless --hypervisor says otherwise). */
  hypervisor?: string;
}

/** What a form puts in its image. */
export interface FormContent {
  /**
   * The image's layers, each a tar of a few members. One file per layer, at the same path in
   * every form (bootLayer), so the kernel and the initrd pushed in several forms, or with
   * several apps, are one blob in the registry, sent once and stored once.
   */
  layers: TarMember[][];
  /** On the manifest, and as the config's Labels (where docker and CRI pass them on). */
  annotations: Record<string, string>;
  /** The config's Cmd, when the consumer runs the image's command. */
  cmd?: string[];
}

export interface ConsumerForm {
  /** The --as value and the tag suffix (TAG-name). */
  name: string;
  compose(input: FormInput): FormContent;
}

/** Where every form puts the kernel and the initramfs. */
export const KERNEL_PATH = "boot/vmlinux";
export const INITRD_PATH = "boot/initrd";

/** A layer of one file under boot/: byte for byte the same wherever the same file goes. */
export function bootLayer(name: string, body: { file: string; size: number }): TarMember[] {
  return [
    { name: "boot/", mode: 0o755 },
    { name, mode: 0o644, body },
  ];
}

/** The kernel a form boots: the file itself when an app is built into it, else --kernel. */
function bootKernel(i: FormInput, form: string): KernelArtifact | "embedded" {
  const a = i.artifact;
  if (a.kind === "kernel") {
    if (typeof a.embedded === "object") return "embedded";
    throw new UserError(`${i.file}: ${describe(a)} with no app in it; --as ${form} needs the image it boots`);
  }
  if (!i.kernel)
    throw new UserError(`${i.file}: --as ${form} puts the kernel in the image; give it with --kernel FILE`);
  return i.kernel;
}

/**
 * The kernel's layer and, for an initramfs, the initrd's: what urunc and flintlock boot, at
 * the same paths in both. `kernel` is the file and its format (urunc checks it for its VMM).
 */
export function bootLayers(i: FormInput, form: string) {
  const k = bootKernel(i, form);
  const a = i.artifact;
  const kernel =
    k === "embedded"
      ? { file: i.file, size: a.bytes, format: a.kind === "kernel" ? a.format : "" }
      : { file: k.path, size: k.bytes, format: k.format };
  const layers = [bootLayer(KERNEL_PATH, { file: kernel.file, size: kernel.size })];
  if (a.kind === "initramfs") layers.push(bootLayer(INITRD_PATH, { file: i.file, size: a.bytes }));
  return { layers, kernel };
}

export interface ComposedImage {
  manifest: Buffer;
  blobs: { source: BlobSource; digest: string; size: number }[];
}

/** The image of `content` for `architecture`: its tar layers, the OCI config, the manifest. */
export async function composeImage(
  content: FormContent,
  architecture: string,
  title: string,
  epoch: number,
): Promise<ComposedImage> {
  const layers = [];
  for (const members of content.layers) {
    const parts = tarLayer(members, epoch);
    layers.push({ parts, ...(await partsDigest(parts)) });
  }
  const hasLabels = Object.keys(content.annotations).length > 0;
  const config = Buffer.from(
    JSON.stringify({
      created: createdAt(epoch),
      architecture,
      os: "linux",
      config: {
        ...(content.cmd ? { Cmd: content.cmd } : {}),
        ...(hasLabels ? { Labels: content.annotations } : {}),
      },
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) },
    }),
  );
  const configDigest = digestOf(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config: { mediaType: OCI_CONFIG_TYPE, digest: configDigest, size: config.length },
      layers: layers.map((l) => ({ mediaType: TAR_LAYER_TYPE, digest: l.digest, size: l.size })),
      annotations: {
        [ANNOTATION.created]: createdAt(epoch),
        [ANNOTATION.title]: title,
        ...content.annotations,
      },
    }),
  );
  return {
    manifest,
    blobs: [
      ...layers.map((l) => ({ source: { parts: l.parts }, digest: l.digest, size: l.size })),
      { source: { bytes: config }, digest: configDigest, size: config.length },
    ],
  };
}
