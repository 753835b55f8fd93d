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
import type { Arch } from "../arch/arch.js";
import { artifactArch, type InitramfsArtifact } from "../artifact/identify.js";
import { decompressor } from "../compress/compress.js";
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
 * Nothing in the file is compressed: the built-in initramfs goes in as a plain cpio, and the
 * kernel is the ELF vmlinux on amd64 (QEMU starts it at its PVH entry) and the Image on arm64
 * (never compressed). Before 2026-12-03 a gzip cpio went inside the xz bzImage, so a boot
 * decompressed the app twice, both decoders emulated under TCG: the embedded form was then
 * the slowest of all (README, "Cold start"). Measured on the traced nginx (9.96 MB of cpio),
 * CPU to the first answer: the ELF 1.76 s, an lz4 bzImage around the plain cpio (7.75 MB)
 * 2.16 s. The costs: the file (27.7 MB on amd64 against 6.3 MB), and RAM, since the kernel
 * holds the whole cpio until it is unpacked (facts.ts counts it).
 */
const EMBED_TARGET: Record<Arch, { make: string; image: string }> = {
  amd64: { make: "vmlinux", image: "vmlinux" },
  arm64: TARGET.arm64,
};

const INITRAMFS_SETTINGS = [
  "CONFIG_INITRAMFS_ROOT_UID=0",
  "CONFIG_INITRAMFS_ROOT_GID=0",
  "CONFIG_INITRAMFS_COMPRESSION_NONE=y",
];

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
    progress("decompressing the image");
    // A `.cpio` CONFIG_INITRAMFS_SOURCE goes in as is (with INITRAMFS_COMPRESSION_NONE).
    const cpio = join(work, "initramfs.cpio");
    await pipeline(
      await inputStream(o.image.path),
      decompressor(o.image.compression, o.image.path),
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
    // kconfig drops a setting it cannot take without a word: a compressed copy would be slower.
    if (!(await readFile(dotConfig, "utf8")).includes("\nCONFIG_INITRAMFS_COMPRESSION_NONE=y\n"))
      throw new EnvironmentError(`${build.source}: its kconfig has no uncompressed built-in initramfs`);
    progress("linking");
    await make([`-j${availableParallelism()}`, EMBED_TARGET[o.arch].make]);

    const bytes = await writeFileAtomically(
      o.output,
      createReadStream(join(obj, EMBED_TARGET[o.arch].image)),
    );
    return { output: o.output, bytes, kernelDir: kernel.dir };
  } finally {
    await rm(work, { recursive: true, force: true });
    untrackTempPath(work);
  }
}
