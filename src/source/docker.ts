import { UserError } from "../util/errors.js";
import type { SourceScheme } from "./source.js";
import { fromTarLayers } from "./tar-layers.js";

/** An image pulled from a registry (docker://HOST/NAME[:TAG|@DIGEST]). */
export const docker: SourceScheme = {
  scheme: "docker",
  usage: "docker://REF",
  open: async (value, text, opts) => {
    if (!value.startsWith("//"))
      throw new UserError(`${text}: a registry reference is written docker://HOST/NAME[:TAG]`);
    if (value === "//") throw new UserError(`${text}: missing reference`);
    // Loaded on use: the registry client is the largest source and most builds never need it.
    const { pullImage } = await import("../image/registry/client.js");
    return fromTarLayers(
      await pullImage(value.slice(2), {
        insecure: opts.insecure,
        platform: opts.platform,
        progress: opts.progress,
      }),
    );
  },
};
