import { openOciLayout } from "../image/oci-layout.js";
import type { SourceScheme } from "./source.js";
import { fromTarLayers } from "./tar-layers.js";

/** An OCI image layout directory (what umoci and skopeo write). */
export const oci: SourceScheme = {
  scheme: "oci",
  usage: "oci:PATH[:TAG]",
  open: async (value, _text, opts) => fromTarLayers(await openOciLayout(value, opts.platform)),
};
