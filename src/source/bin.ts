import { realpath, stat } from "node:fs/promises";
import { basename, resolve } from "node:path";
import { type Arch, archOf, archOfElfMachine } from "../arch/arch.js";
import { resolveClosure } from "../elf/closure.js";
import { ElfError, ET_DYN, ET_EXEC, elfTargetForArch, isElf, PT_LOAD, parseElf } from "../elf/elf.js";
import { parseShebang } from "../elf/shebang.js";
import { formatPlatform } from "../image/platform.js";
import type { Platform } from "../image/types.js";
import { addHostPath } from "../tree/host.js";
import { hostFs } from "../tree/image-fs.js";
import type { Tree } from "../tree/tree.js";
import { limitsFromEnv } from "../util/budget.js";
import { UserError } from "../util/errors.js";
import { readInput } from "../util/input-file.js";
import type { SourceScheme } from "./source.js";

/** Where a host executable lands in the image it becomes. */
export function hostBinaryImagePath(hostPath: string): string {
  return `/usr/local/bin/${basename(hostPath)}`;
}

/** The kernel follows at most this many `#!` interpreters in a row (BINPRM's depth). */
const MAX_SCRIPT_DEPTH = 4;

/**
 * What the kernel would run for `real` (a regular file's real path): an ELF executable of a
 * machine slimroot targets, whole (every loaded segment inside the file), or a `#!` script
 * whose interpreter is one. Returns the architecture; anything else is a one-line error.
 */
async function runnableArch(real: string, what: string, depth = 0): Promise<Arch> {
  // Read whole (the ELF checks need every segment), so bounded like the image it becomes.
  const data = await readInput(real, `${what}: ${real}`, { bytes: limitsFromEnv().bytes, key: "bytes" });
  if (data.subarray(0, 2).toString("latin1") === "#!") {
    const interp = parseShebang(data)?.interpreter ?? "";
    if (!interp.startsWith("/")) throw new UserError(`${what}: a #! script without an absolute interpreter`);
    if (depth >= MAX_SCRIPT_DEPTH) throw new UserError(`${what}: too many #! interpreters in a row`);
    const next = await realpath(interp).catch(() => {
      throw new UserError(`${what}: its #! interpreter ${interp} does not exist on this host`);
    });
    return runnableArch(next, `${what} (interpreter ${interp})`, depth + 1);
  }
  if (!isElf(data)) throw new UserError(`${what}: not an ELF executable or a #! script`);
  let machine: number;
  try {
    const elf = parseElf(data);
    if (elf.type !== ET_EXEC && elf.type !== ET_DYN)
      throw new ElfError(`ELF type ${elf.type} is not an executable`);
    const loads = elf.programHeaders.filter((p) => p.type === PT_LOAD);
    if (loads.length === 0) throw new ElfError("no loadable segment");
    if (loads.some((p) => p.offset + p.filesz > data.length))
      throw new ElfError("a loadable segment is past the end of the file (truncated?)");
    machine = elf.machine;
  } catch (err) {
    if (err instanceof ElfError)
      throw new UserError(`${what}: not a runnable ELF executable: ${err.message}`);
    throw err;
  }
  const arch = archOfElfMachine(machine);
  if (!arch)
    throw new UserError(`${what}: an ELF for machine ${machine}; slimroot builds amd64 and arm64 only`);
  return arch;
}

/**
 * The seed's second route: a host executable becomes the app. A static binary brings only
 * itself; a dynamic one brings its ELF closure resolved from the host's root (the same
 * resolver as for images), each file at its host path, symlink chains kept as links.
 * A symlink given as the binary is followed as the host would run it: the file it leads
 * to lands at /usr/local/bin/NAME, under the name given. The binary's ELF machine is the
 * image's architecture; a `platform` (--platform) that says otherwise is an error.
 * Everything is checked and resolved here; `addTo` only copies.
 */
export async function prepareHostBinary(
  file: string,
  platform: Platform | undefined,
): Promise<{
  entrypoint: string;
  warnings: string[];
  arch: Arch;
  addTo(tree: Tree, layer: number): Promise<void>;
}> {
  const what = `bin:${file}`;
  const abs = resolve(file);
  const st = await stat(abs).catch(() => undefined);
  if (st?.isDirectory()) throw new UserError(`${what}: is a directory, not an executable`);
  if (!st?.isFile()) throw new UserError(`${what}: ${st ? "not a regular file" : "no such file"}`);
  if (!(st.mode & 0o111)) throw new UserError(`${what}: not executable`);
  const real = await realpath(abs);
  const arch = await runnableArch(real, what);
  if (platform && archOf(platform.architecture) !== arch)
    throw new UserError(`${what}: the binary is ${arch}, but --platform says ${formatPlatform(platform)}`);
  const target = elfTargetForArch(arch)!;
  const closure = await resolveClosure(hostFs("/"), [real], {
    machine: target.machine,
    elfClass: target.elfClass,
  });
  const entrypoint = hostBinaryImagePath(abs);
  const owner = { uid: 0, gid: 0 };
  const addTo = async (tree: Tree, layer: number) => {
    await addHostPath(tree, real, entrypoint, { owner, layer });
    // Links first, so a real directory never takes the place of a linked one (/lib -> usr/lib).
    const paths = [...closure.files.keys()].filter((p) => p !== real).sort();
    for (const p of paths) await addHostPath(tree, p, p, { owner, layer, shallow: true });
  };
  return { entrypoint, warnings: closure.warnings, arch, addTo };
}

/** `bin:PATH`: the executable is the entrypoint and its architecture the image's. */
export const bin: SourceScheme = {
  scheme: "bin",
  usage: "bin:PATH",
  open: async (file, text, opts) => {
    const host = await prepareHostBinary(file, opts.requested);
    return {
      ref: text,
      platform: { os: "linux", architecture: host.arch },
      config: { entrypoint: [host.entrypoint] },
      layers: [{ name: text, apply: (tree, { index }) => host.addTo(tree, index) }],
      warnings: host.warnings,
    };
  },
};
