import { createReadStream, existsSync, statSync } from "node:fs";
import { decompressLayer } from "../image/layer-stream.js";
import { UserError } from "../util/errors.js";
import type { SourceScheme } from "./source.js";
import { fromTarLayers } from "./tar-layers.js";

/** A rootfs tarball (plain, gzip, zstd or xz) is a one-layer image with no config. */
export const tar: SourceScheme = {
  scheme: "tar",
  usage: "tar:PATH",
  open: async (path, text) => {
    if (!existsSync(path) || !statSync(path).isFile()) throw new UserError(`${text}: no such file`);
    return fromTarLayers({
      ref: text,
      config: {},
      layers: [{ name: text, open: async () => decompressLayer(createReadStream(path), text) }],
    });
  },
};
