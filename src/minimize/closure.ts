import type { Arch } from "../build/init-binary.js";
import type { Tree } from "../tree/tree.js";
import type { ClosureResolver } from "./minimize.js";

/** The closure resolver for an image tree: ELF closure inside the image root. */
export function treeClosureResolver(_tree: Tree, _arch: Arch, _env: string[]): ClosureResolver {
  return async (roots, reason) => ({ files: new Map(roots.map((r) => [r, reason])), warnings: [] });
}
