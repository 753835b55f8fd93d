import type { Image } from "../image/types.js";
import { applyLayer } from "../tree/flatten.js";
import type { SourceImage } from "./source.js";

/** An image of tar layers (OCI layout, docker archive, registry, rootfs tarball) as a source. */
export function fromTarLayers(image: Image): SourceImage {
  return {
    ref: image.ref,
    ...(image.digest ? { digest: image.digest } : {}),
    ...(image.platform ? { platform: image.platform } : {}),
    config: image.config,
    layers: image.layers.map((layer) => ({
      name: layer.name,
      apply: async (tree, { index, spool }) => applyLayer(tree, await layer.open(), index, layer.name, spool),
    })),
    warnings: [],
  };
}
