import { addHostPath } from "../tree/host.js";
import type { SourceScheme } from "./source.js";

/** A host directory is the root filesystem as it is: owners, modes and links kept. */
export const dir: SourceScheme = {
  scheme: "dir",
  usage: "dir:PATH",
  open: async (path, text) => ({
    ref: text,
    config: {},
    layers: [{ name: text, apply: (tree, { index }) => addHostPath(tree, path, "/", { layer: index }) }],
    warnings: [],
  }),
};
