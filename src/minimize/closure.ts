import type { Arch } from "../arch/arch.js";
import { closureSession } from "../elf/closure.js";
import { elfTargetForArch } from "../elf/elf.js";
import { type ImageFs, resolvePath, treeFs } from "../tree/image-fs.js";
import type { Tree } from "../tree/tree.js";
import type { ClosureResolver } from "./minimize.js";

/**
 * The closure resolver for an image tree: each root with the symlinks on its way, its ELF
 * interpreter and libraries (resolved inside the image, never by running anything), or its
 * script interpreter. Image paths here carry no leading "/".
 */
export function treeClosureResolver(tree: Tree, arch: Arch, env: string[]): ClosureResolver {
  return fsClosureResolver(treeFs(tree), arch, env);
}

export function fsClosureResolver(fs: ImageFs, arch: Arch, env: string[]): ClosureResolver {
  const target = elfTargetForArch(arch)!;
  const resolve = closureSession(fs, { machine: target.machine, elfClass: target.elfClass, env });
  return async (roots, reason) => {
    const files = new Map<string, string>();
    const absolute: string[] = [];
    for (const root of roots) {
      const abs = `/${root.replace(/^\/+/, "")}`;
      files.set(root.replace(/^\/+/, ""), reason);
      const resolved = resolvePath(fs, abs);
      // Directories bring nothing else; everything else is looked at by the ELF resolver.
      if (resolved && fs.lstat(resolved.path)?.kind !== "dir") absolute.push(abs);
      else if (resolved)
        for (const link of resolved.links) files.set(link.slice(1), `symlink on the way to ${abs}`);
    }
    const c = await resolve(absolute);
    for (const [p, why] of c.files) {
      const path = p.replace(/^\/+/, "");
      if (!files.has(path)) files.set(path, why === "root" ? reason : why);
    }
    return { files, warnings: c.warnings };
  };
}
