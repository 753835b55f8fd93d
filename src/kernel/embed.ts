/**
 * `slimroot kernel build --embed IMAGE -o FILE`: one bootable file, the kernel with a slimroot
 * image built in through CONFIG_INITRAMFS_SOURCE. Relinks from a copy of the cached object
 * tree (the cache entry stays as built), so only the initramfs and the link are redone.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, readdir, readFile, realpath, rm, stat, utimes, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { artifactArch, type InitramfsArtifact } from "../artifact/identify.js";
import { compressor, decompressor } from "../compress/compress.js";
import { writeFileAtomically } from "../output/atomic.js";
import { checkOutput, whyPath } from "../output/output.js";
import { EnvironmentError, UserError } from "../util/errors.js";
import { inputStream } from "../util/input-file.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";
import { BUILD_DIR, buildKernel, type KernelBuildOptions, TARGET } from "./build.js";
import { capture, makeArgs, runLogged } from "./make.js";

export interface EmbedOptions extends KernelBuildOptions {
  /** The image to build in (identify()'s value: an initramfs). */
  image: InitramfsArtifact;
  output: string;
}

export interface EmbedResult {
  output: string;
  bytes: number;
  /** The kernel directory it was linked from. */
  kernelDir: string;
}

/**
 * The built-in initramfs goes in as gzip (a `.cpio.gz` CONFIG_INITRAMFS_SOURCE is copied in
 * as is): an uncompressed cpio inside the xz-compressed kernel made a smaller file, but the
 * kernel then holds the whole cpio while unpacking it. Measured on the traced nginx image
 * (2026-11-29): plain 5.16 MB file, 45 MiB least RAM; gzip 6.15 MB, 39 MiB; the same time to
 * the first HTTP 200 (3.3 s). gzip's decoder needs no dictionary, unlike xz's.
 */
const INITRAMFS_SETTINGS = ["CONFIG_INITRAMFS_ROOT_UID=0", "CONFIG_INITRAMFS_ROOT_GID=0"];

/**
 * The kernel's own objects are built with paths relative to the object tree, but objtool's
 * (tools/) record the tree's absolute path in their .cmd files: in a copy elsewhere make
 * would rebuild objtool and then, since every object depends on it, the whole kernel. This
 * points those records at the copy, keeping each file's timestamps.
 */
export async function relocateObjectTree(obj: string): Promise<void> {
  const marker = join(obj, "tools", "objtool", ".fixdep-in.o.cmd");
  const head = await readFile(marker, "utf8").catch(() => undefined);
  const old = head && /^cmd_(\/\S+)\/tools\/objtool\/fixdep-in\.o :=/.exec(head)?.[1];
  if (!old || old === obj) return;
  for (const e of await readdir(join(obj, "tools"), { recursive: true, withFileTypes: true })) {
    if (!e.isFile() || !/^\..*\.(cmd|d)$/.test(e.name)) continue;
    const path = join(e.parentPath, e.name);
    const text = await readFile(path, "utf8");
    if (!text.includes(old)) continue;
    const st = await stat(path);
    await writeFile(path, text.split(old).join(obj));
    await utimes(path, st.atime, st.mtime);
  }
}

export async function embedImage(o: EmbedOptions): Promise<EmbedResult> {
  const progress = o.progress ?? (() => {});
  // Before the minutes of relinking: -o is never what the build reads (the image, its .why,
  // the fragments, the source tree).
  await checkOutput(
    o.output,
    [
      { path: o.image.path, what: `--embed ${o.image.path}` },
      { path: whyPath(o.image.path), what: whyPath(o.image.path) },
      ...(o.fragments ?? []).map((f) => ({ path: f, what: `--config-fragment ${f}` })),
      ...(o.source ? [{ path: o.source, what: `--source ${o.source}` }] : []),
    ],
    { why: false },
  );
  const arch = artifactArch(o.image);
  if (arch !== o.arch)
    throw new UserError(`${o.image.path}: its /init is ${arch}, not ${o.arch} (give --arch ${arch})`);
  const kernel = await buildKernel(o);
  const build = kernel.manifest.build;
  if (!build)
    throw new EnvironmentError(`${kernel.dir}: no object tree to relink (build it again with --force)`);

  // The entry's own directory: a `kernel build --force` meanwhile swaps the entry's link to a
  // new one and leaves this one for us.
  const kernelDir = await realpath(kernel.dir);
  const work = await mkdtemp(join(dirname(kernel.dir), `.embed-${o.arch}-`));
  trackTempPath(work);
  try {
    progress("recompressing the image");
    const cpio = join(work, "initramfs.cpio.gz");
    await pipeline(
      await inputStream(o.image.path),
      decompressor(o.image.compression, o.image.path),
      compressor("gzip"),
      createWriteStream(cpio),
    );

    progress("copying the kernel's object tree");
    const obj = join(work, BUILD_DIR);
    // -a keeps the timestamps: make then rebuilds only what the initramfs touches.
    await capture("cp", ["-a", "--reflink=auto", join(kernelDir, build.dir), obj]);
    await relocateObjectTree(obj);

    const log = join(work, "embed.log");
    const make = (args: string[]) =>
      runLogged("make", ["-C", build.source, ...makeArgs(o.arch, obj), ...args], { log }).catch(
        async (err: Error) => {
          const kept = join(kernelDir, "last-embed.log");
          await writeFile(kept, await readFile(log)).catch(() => {});
          throw new EnvironmentError(err.message.replace(log, kept));
        },
      );
    const dotConfig = join(obj, ".config");
    const settings = [`CONFIG_INITRAMFS_SOURCE="${cpio}"`, ...INITRAMFS_SETTINGS];
    await writeFile(dotConfig, `${await readFile(dotConfig, "utf8")}\n${settings.join("\n")}\n`);
    progress("configuring");
    await make(["olddefconfig"]);
    progress("linking");
    await make([`-j${availableParallelism()}`, TARGET[o.arch].make]);

    const bytes = await writeFileAtomically(o.output, createReadStream(join(obj, TARGET[o.arch].image)));
    return { output: o.output, bytes, kernelDir: kernel.dir };
  } finally {
    await rm(work, { recursive: true, force: true });
    untrackTempPath(work);
  }
}
