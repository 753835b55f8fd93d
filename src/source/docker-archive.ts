import { openDockerArchive } from "../image/docker-archive.js";
import type { SourceScheme } from "./source.js";
import { fromTarLayers } from "./tar-layers.js";

/** A `docker save` / skopeo docker-archive tarball. */
export const dockerArchive: SourceScheme = {
  scheme: "docker-archive",
  usage: "docker-archive:PATH[:NAME:TAG]",
  open: async (value) => fromTarLayers(await openDockerArchive(value)),
};
