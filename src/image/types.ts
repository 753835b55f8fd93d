import type { Readable } from "node:stream";

/** An OCI platform, as in an image index's `platform` object. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** The parts of an OCI image config that say how to run the app. */
export interface ImageConfig {
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  user?: string;
  /** "80/tcp" style keys of ExposedPorts. */
  exposedPorts?: string[];
}

/** One layer: a tar stream applied on top of the layers before it. */
export interface Layer {
  /** Names the layer in errors, e.g. "sha256:ab12... of docker://host/nginx:latest". */
  name: string;
  /** Opens the layer as an *uncompressed* tar stream. */
  open(): Promise<Readable>;
}

/** An image resolved from any source: its run config and its layers, bottom first. */
export interface Image {
  /** The reference the user gave, e.g. "oci:./nginx:latest". */
  ref: string;
  /** Manifest digest when the source has one (oci, docker, docker-archive). */
  digest?: string;
  platform?: Platform;
  config: ImageConfig;
  layers: Layer[];
}
