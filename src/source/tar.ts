import { decompressLayer } from "../image/layer-stream.js";
import { inputStream, statInput } from "../util/input-file.js";
import type { SourceScheme } from "./source.js";
import { fromTarLayers } from "./tar-layers.js";

/** A rootfs tarball (plain, gzip, zstd or xz) is a one-layer image with no config. */
export const tar: SourceScheme = {
  scheme: "tar",
  usage: "tar:PATH",
  open: async (path, text) => {
    await statInput(path, text);
    return fromTarLayers({
      ref: text,
      config: {},
      layers: [{ name: text, open: async () => decompressLayer(await inputStream(path, text), text) }],
    });
  },
};
