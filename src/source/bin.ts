import { stat } from "node:fs/promises";
import { basename, resolve } from "node:path";
import { type Arch, archOf } from "../arch/arch.js";
import { resolveClosure } from "../elf/closure.js";
import { elfTargetForArch } from "../elf/elf.js";
import { addHostPath } from "../tree/host.js";
import { hostFs } from "../tree/image-fs.js";
import type { Tree } from "../tree/tree.js";
import { UserError } from "../util/errors.js";
import type { SourceScheme } from "./source.js";

/** Where a host executable lands in the image it becomes. */
export function hostBinaryImagePath(hostPath: string): string {
  return `/usr/local/bin/${basename(hostPath)}`;
}

/**
 * The seed's second route: a host executable becomes the app. A static binary brings only
 * itself; a dynamic one brings its ELF closure resolved from the host's root (the same
 * resolver as for images), each file at its host path, symlink chains kept as links.
 */
export async function addHostBinary(
  tree: Tree,
  file: string,
  arch: Arch,
): Promise<{ entrypoint: string; warnings: string[] }> {
  const abs = resolve(file);
  const st = await stat(abs).catch(() => undefined);
  if (!st?.isFile()) throw new UserError(`bin:${file}: no such file`);
  if (!(st.mode & 0o111)) throw new UserError(`bin:${file}: not executable`);
  const target = elfTargetForArch(arch)!;
  const closure = await resolveClosure(hostFs("/"), [abs], {
    machine: target.machine,
    elfClass: target.elfClass,
  });
  const entrypoint = hostBinaryImagePath(abs);
  await addHostPath(tree, abs, entrypoint, { owner: { uid: 0, gid: 0 }, layer: 0 });
  // Links first, so a real directory never takes the place of a linked one (/lib -> usr/lib).
  const paths = [...closure.files.keys()].filter((p) => p !== abs).sort();
  for (const p of paths)
    await addHostPath(tree, p, p, { owner: { uid: 0, gid: 0 }, layer: 0, shallow: true });
  return { entrypoint, warnings: closure.warnings };
}

/**
 * `bin:PATH`: the executable is the entrypoint; its files (and the warnings about libraries
 * the closure could not find) come when the layer is applied.
 */
export const bin: SourceScheme = {
  scheme: "bin",
  usage: "bin:PATH",
  open: async (file, text, opts) => {
    const warnings: string[] = [];
    return {
      ref: text,
      config: { entrypoint: [hostBinaryImagePath(resolve(file))] },
      layers: [
        {
          name: text,
          apply: async (tree) => {
            const added = await addHostBinary(tree, file, archOf(opts.platform.architecture));
            warnings.push(...added.warnings);
          },
        },
      ],
      warnings,
    };
  },
};
