import { stat } from "node:fs/promises";
import { basename, resolve } from "node:path";
import { archOf } from "../arch/arch.js";
import { resolveClosure } from "../elf/closure.js";
import { elfTargetForArch } from "../elf/elf.js";
import { addHostPath } from "../tree/host.js";
import { hostFs } from "../tree/image-fs.js";
import { UserError } from "../util/errors.js";
import type { SourceScheme } from "./source.js";

/** Where a host executable lands in the image it becomes. */
export function hostBinaryImagePath(hostPath: string): string {
  return `/usr/local/bin/${basename(hostPath)}`;
}

/**
 * The seed's second route: a host executable becomes the app. A static binary brings only
 * itself; a dynamic one brings its ELF closure resolved from the host's root (the same
 * resolver as for images), each file at its host path, symlink chains kept as links. The
 * executable is the entrypoint.
 */
export const bin: SourceScheme = {
  scheme: "bin",
  usage: "bin:PATH",
  open: async (file, text, opts) => {
    const abs = resolve(file);
    const st = await stat(abs).catch(() => undefined);
    if (!st?.isFile()) throw new UserError(`${text}: no such file`);
    if (!(st.mode & 0o111)) throw new UserError(`${text}: not executable`);
    const target = elfTargetForArch(archOf(opts.platform.architecture))!;
    const closure = await resolveClosure(hostFs("/"), [abs], {
      machine: target.machine,
      elfClass: target.elfClass,
    });
    const entrypoint = hostBinaryImagePath(abs);
    const owner = { uid: 0, gid: 0 };
    return {
      ref: text,
      config: { entrypoint: [entrypoint] },
      layers: [
        {
          name: text,
          apply: async (tree, { index }) => {
            await addHostPath(tree, abs, entrypoint, { owner, layer: index });
            // Links first, so a real directory never takes the place of a linked one (/lib -> usr/lib).
            const paths = [...closure.files.keys()].filter((p) => p !== abs).sort();
            for (const p of paths) await addHostPath(tree, p, p, { owner, layer: index, shallow: true });
          },
        },
      ],
      warnings: closure.warnings,
    };
  },
};
