import { createHash } from "node:crypto";
import { type Duplex, Readable } from "node:stream";
import type { Arch } from "../arch/arch.js";
import { type Compression, compressionTools, compressor, compressorVersion } from "../compress/compress.js";
import { writeListDir } from "../cpio/list-dir.js";
import { NEWC_MAX_FILE_SIZE } from "../cpio/newc.js";
import { cpioWarnings, writeCpio } from "../cpio/writer.js";
import { DISK_TOOLS, type DiskFormat } from "../disk/formats.js";
import { withDiskFile } from "../disk/write.js";
import type { LayerLimits } from "../tree/flatten.js";
import type { Tree } from "../tree/tree.js";
import { writeFileAtomically, writeFilesAtomically } from "../util/atomic-file.js";
import { whyPath } from "./output.js";
import { contentBytes, hashTap, progressCounter } from "./progress.js";
import type { WhyHeader } from "./why.js";

/** What a writer needs besides the finished tree. */
export interface WriteOptions {
  output: string;
  /** Mtimes later than this are clamped to it. */
  epoch: number;
  compression: Compression;
  /** The image's architecture: xz's BCJ filter is chosen by it. */
  arch: Arch;
  /** The source reference, for writers that record it. */
  source: string;
  /** The text of OUTPUT.why with this header; written beside the output. */
  why: (header: WhyHeader) => string;
  verify?: (image: string) => Promise<void>;
  onWrite?: (p: { done: number; total: number }) => void;
  /** ext4: the image size (default: the content plus a margin). */
  sizeBytes?: number;
}

/** One output format of `slimroot build --format`: tree in, output (and its .why) written. */
export interface ImageWriter {
  /** Returns the bytes written. */
  write(tree: Tree, o: WriteOptions): Promise<number>;
  /** Whether the output is one image `slimroot run` (and build's verification boot) takes. */
  bootable: boolean;
  /** Whether --compress applies. */
  compressed: boolean;
  /** Whether -o names a directory. */
  directory: boolean;
  /** The host tools it runs (util/tools.ts), checked before the build starts. */
  tools(compression: Compression): readonly string[];
  /** What the format cannot hold, checked while the layers are read. */
  limits: LayerLimits;
  /** What the format will leave out of this tree, as warnings. */
  warnings(tree: Tree): string[];
  /** A disk root: the init moves /dev, /proc, ... onto it, so their mount points must exist. */
  mountPoints?: boolean;
}

/**
 * A disk image (src/disk/): made by the format's own mkfs tool into the temp file, replaced
 * together with its .why. No limits: the tree's sizes and xattrs all fit.
 */
function disk(format: DiskFormat): ImageWriter {
  return {
    bootable: true,
    compressed: false,
    directory: false,
    mountPoints: true,
    tools: () => DISK_TOOLS[format],
    limits: {},
    warnings: () => [],
    write: async (tree, o) => {
      const d = { format, output: o.output, epoch: o.epoch };
      const [bytes] = await withDiskFile(tree, o.sizeBytes ? { ...d, sizeBytes: o.sizeBytes } : d, (file) =>
        writeFilesAtomically(
          [
            file,
            {
              target: whyPath(o.output),
              source: () => Readable.from([o.why({ format })]),
            },
          ],
          o.verify ? (tmps) => o.verify!(tmps[0]!) : undefined,
        ),
      );
      return bytes!;
    },
  };
}

/** newc (and so a gen_init_cpio list) has 32-bit sizes and no extended attributes. */
const NEWC = {
  limits: { maxFileSize: { bytes: NEWC_MAX_FILE_SIZE, format: "newc cpio" } },
  warnings: cpioWarnings,
};

/** Every format, by name. A new format is a writer module and a line here. */
export const FORMATS = {
  cpio: {
    ...NEWC,
    bootable: true,
    compressed: true,
    directory: false,
    tools: compressionTools,
    write: async (tree, o) => {
      const cpioHash = createHash("sha256");
      const imageHash = createHash("sha256");
      const stages: Duplex[] = [hashTap(cpioHash), compressor(o.compression, o.arch), hashTap(imageHash)];
      if (o.onWrite) stages.unshift(progressCounter(contentBytes(tree), o.onWrite));
      const compressorName = await compressorVersion(o.compression, o.arch);
      // Known once the image is written, when the .why's turn comes.
      const header = (): WhyHeader => ({
        format: "cpio",
        compressor: compressorName,
        cpioSha256: cpioHash.digest("hex"),
        imageSha256: imageHash.digest("hex"),
      });
      // The image and its .why are replaced together or not at all.
      const [bytes] = await writeFilesAtomically(
        [
          { target: o.output, source: writeCpio(tree, { clampMtime: o.epoch }), transforms: stages },
          { target: whyPath(o.output), source: () => Readable.from([o.why(header())]) },
        ],
        o.verify ? (tmps) => o.verify!(tmps[0]!) : undefined,
      );
      return bytes!;
    },
  },
  "initramfs-list": {
    ...NEWC,
    bootable: false,
    compressed: false,
    directory: true,
    tools: () => [],
    write: async (tree, o) => {
      const bytes = await writeListDir(tree, o.output, { clampMtime: o.epoch, source: o.source });
      await writeFileAtomically(whyPath(o.output), Readable.from([o.why({ format: "initramfs-list" })]));
      return bytes;
    },
  },
  ext4: disk("ext4"),
  erofs: disk("erofs"),
  squashfs: disk("squashfs"),
} satisfies Record<string, ImageWriter>;

export type ImageFormat = keyof typeof FORMATS;
export const IMAGE_FORMATS = Object.keys(FORMATS) as ImageFormat[];
