import type { ImageConfig, Platform } from "../image/types.js";
import type { Spool } from "../tree/spool.js";
import type { Tree } from "../tree/tree.js";

/**
 * What every source gives the pipeline, whatever it reads (an OCI layout, a registry, a host
 * directory, a host binary, a gen_init_cpio list): the run config and what goes into the
 * tree, bottom first. The shape of go-containerregistry's v1.Image, with layers that write
 * into a Tree instead of handing out tar streams, so sources that are not tarballs need no
 * tar round trip.
 */
export interface SourceImage {
  /** The reference the user gave, e.g. "oci:./nginx:latest". */
  ref: string;
  /** Manifest digest when the source has one (oci, docker, docker-archive). */
  digest?: string;
  /** The image's own platform when it names one; the pipeline checks it against --platform. */
  platform?: Platform;
  config: ImageConfig;
  layers: TreeLayer[];
  /** Found while opening (a bin: source's missing libraries). */
  warnings: string[];
}

/** One contribution to the tree, applied over the ones before it. */
export interface TreeLayer {
  /** Names the layer in errors and progress, e.g. "sha256:ab12... of oci:./nginx". */
  name: string;
  /** Adds this layer's entries; `index` orders layers (whiteouts hide lower layers only). */
  apply(tree: Tree, at: { index: number; spool: Spool }): Promise<void>;
}

export interface OpenOptions {
  /** The platform the build is for (--platform, else the host's). */
  platform: Platform;
  /** The --platform the user gave, if any (a bin: source's binary must agree with it). */
  requested?: Platform;
  insecure?: boolean;
  progress?: (p: { done: number; total: number }) => void;
}

/** One kind of source: `scheme:VALUE` on the command line. */
export interface SourceScheme {
  scheme: string;
  /** How a reference is written, for messages: "oci:PATH[:TAG]". */
  usage: string;
  /** Opens `value` (what follows "scheme:"); `text` is the whole reference for messages. */
  open(value: string, text: string, opts: OpenOptions): Promise<SourceImage>;
}
