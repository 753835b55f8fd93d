import { createHash, type Hash } from "node:crypto";
import { resolve } from "node:path";
import { type Duplex, PassThrough, Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Arch } from "../arch/arch.js";
import { type Compression, compressionTools, compressor, compressorVersion } from "../compress/compress.js";
import { FootprintCounter } from "../cpio/footprint.js";
import { LIST_FORBIDDEN } from "../cpio/gen-list.js";
import { writeListDir } from "../cpio/list-dir.js";
import { NEWC_MAX_FILE_SIZE } from "../cpio/newc.js";
import { cpioParts, partRecords } from "../cpio/parts.js";
import { cpioWarnings, writeCpio, writeRecords } from "../cpio/writer.js";
import { DISK_TOOLS, type DiskFormat } from "../disk/formats.js";
import { withDiskFile } from "../disk/write.js";
import { writeFilesAtomically } from "../output/atomic.js";
import { checkOutputDir, whyPath } from "../output/output.js";
import type { WhyHeader, WhyPart } from "../output/why.js";
import type { LayerOwners } from "../tree/dpkg.js";
import { LINUX_XATTR_NAMESPACES, type NameRules } from "../tree/names.js";
import type { Tree } from "../tree/tree.js";
import type { FormatLimits } from "../util/budget.js";
import { contentBytes, hashTap, progressCounter } from "./progress.js";

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
  /** cpio: one archive per layer, concatenated (build --layers, cpio/parts.ts). */
  layers?: boolean;
  /** --layers: each layer's package owners, read before minimizing dropped the database. */
  owners?: LayerOwners;
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
  limits: FormatLimits;
  /** What names, symlink targets and xattrs it can hold: checked (tree/names.ts) before write. */
  names: NameRules;
  /** What the format will leave out of this tree, as warnings. */
  warnings(tree: Tree): string[];
  /** A disk root: the init moves /dev, /proc, ... onto it, so their mount points must exist. */
  mountPoints?: boolean;
}

/**
 * What each disk format stores of xattrs. Every one is staged under fakeroot (disk/stage.ts),
 * whose daemon keeps one attribute of at most 1024 bytes with its name and NUL (fakeroot 1.31:
 * setxattr fails with ERANGE above). squashfs has no system.* (POSIX ACL) attributes; ext4
 * (4 KiB blocks, no ea_inode) keeps one inode's attributes in one block: a 32-byte header, a
 * 4-byte end, and per attribute a 16-byte entry with the name after its namespace prefix,
 * name and value each rounded up to 4 bytes (the 88 bytes it may also use inside a 256-byte
 * inode are not counted).
 */
const DISK_XATTRS: Record<DiskFormat, NonNullable<NameRules["xattrs"]>> = {
  ext4: {
    namespaces: LINUX_XATTR_NAMESPACES,
    maxEntryBytes: 1024,
    maxInodeBytes: {
      bytes: 4096 - 32 - 4,
      entryBytes: (name, value) => {
        const suffix = LINUX_XATTR_NAMESPACES.find((p) => name.toString("latin1").startsWith(p))!.length;
        return ((name.length - suffix + 16 + 3) & ~3) + ((value.length + 3) & ~3);
      },
    },
  },
  erofs: { namespaces: LINUX_XATTR_NAMESPACES, maxEntryBytes: 1024 },
  squashfs: { namespaces: ["user.", "trusted.", "security."], maxEntryBytes: 1024 },
};

/**
 * A disk image (src/disk/): made by the format's own mkfs tool into the temp file, replaced
 * together with its .why. The tree's sizes and xattrs all fit; its paths must fit a host path
 * (PATH_MAX, 4096 bytes) under the staging directory, for which 256 bytes are kept.
 */
function disk(format: DiskFormat): ImageWriter {
  return {
    bootable: true,
    compressed: false,
    directory: false,
    mountPoints: true,
    limits: { maxPathBytes: { bytes: 4096 - 256, format: `${format} staging (a host directory)` } },
    // mkfs.erofs 1.5 fails on a 255-byte name ("Could not format the device: ENOENT").
    names: { format, xattrs: DISK_XATTRS[format], ...(format === "erofs" ? { maxNameBytes: 254 } : {}) },
    tools: () => DISK_TOOLS[format],
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

/**
 * The archives of cpioParts(tree), each through its own compressor, one after another (the
 * kernel unpacks concatenated compressed archives); each part's size and sha256 go to `parts`.
 */
async function* layeredCpio(
  tree: Tree,
  o: WriteOptions,
  cpioHash: Hash,
  parts: WhyPart[],
  footprint: FootprintCounter,
) {
  const total = o.onWrite ? contentBytes(tree) : 0;
  const progress = { done: 0, last: 0 };
  for (const part of await cpioParts(tree, o.owners ? { owners: o.owners } : {})) {
    const hash = createHash("sha256");
    let bytes = 0;
    footprint.nextArchive();
    const archive = writeRecords(partRecords(part, { clampMtime: o.epoch }), {
      onHeader: (h) => footprint.add(h),
    });
    const out = new PassThrough();
    const stages: Duplex[] = [hashTap(cpioHash), compressor(o.compression, o.arch), out];
    if (o.onWrite) stages.unshift(progressCounter(total, o.onWrite, progress));
    const done = pipeline([archive, ...stages]);
    done.catch(() => {}); // a failure also ends `out` with it, which the loop below throws
    for await (const chunk of out) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
      yield chunk as Buffer;
    }
    await done;
    const pkg = part.package ? { package: part.package.key, version: part.package.version } : {};
    parts.push({ name: part.name, bytes, sha256: hash.digest("hex"), ...pkg });
  }
  o.onWrite?.({ done: total, total });
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
    names: { format: "cpio" },
    bootable: true,
    compressed: true,
    directory: false,
    tools: compressionTools,
    write: async (tree, o) => {
      const cpioHash = createHash("sha256");
      const imageHash = createHash("sha256");
      // --layers: one archive per layer, each compressed on its own (cpio/parts.ts).
      const parts: WhyPart[] = [];
      // Counted as the headers are written, for `run` to size memory by (output/why.ts).
      const footprint = new FootprintCounter();
      const stages: Duplex[] = o.layers
        ? [hashTap(imageHash)]
        : [hashTap(cpioHash), compressor(o.compression, o.arch), hashTap(imageHash)];
      if (o.onWrite && !o.layers) stages.unshift(progressCounter(contentBytes(tree), o.onWrite));
      const source = o.layers
        ? Readable.from(layeredCpio(tree, o, cpioHash, parts, footprint))
        : writeCpio(tree, { clampMtime: o.epoch, onHeader: (h) => footprint.add(h) });
      const compressorName = await compressorVersion(o.compression, o.arch);
      // Known once the image is written, when the .why's turn comes.
      const header = (): WhyHeader => ({
        format: "cpio",
        compressor: compressorName,
        cpioSha256: cpioHash.digest("hex"),
        imageSha256: imageHash.digest("hex"),
        ...(o.layers ? { parts } : {}),
        footprint: footprint.result(),
      });
      // The image and its .why are replaced together or not at all.
      const [bytes] = await writeFilesAtomically(
        [
          { target: o.output, source, transforms: stages },
          { target: whyPath(o.output), source: () => Readable.from([o.why(header())]) },
        ],
        o.verify ? (tmps) => o.verify!(tmps[0]!) : undefined,
      );
      return bytes!;
    },
  },
  "initramfs-list": {
    ...NEWC,
    names: { format: "initramfs-list", forbidden: LIST_FORBIDDEN },
    bootable: false,
    compressed: false,
    directory: true,
    tools: () => [],
    write: async (tree, o) => {
      const target = resolve(o.output);
      // The directory and its .why are replaced together; the old directory only if it is slimroot's.
      const [bytes] = await writeFilesAtomically([
        {
          target,
          directory: true,
          write: async (tmp) => {
            await checkOutputDir(target, `-o ${o.output}`);
            return writeListDir(tree, tmp, target, { clampMtime: o.epoch, source: o.source });
          },
        },
        { target: whyPath(o.output), source: () => Readable.from([o.why({ format: "initramfs-list" })]) },
      ]);
      return bytes!;
    },
  },
  ext4: disk("ext4"),
  erofs: disk("erofs"),
  squashfs: disk("squashfs"),
} satisfies Record<string, ImageWriter>;

export type ImageFormat = keyof typeof FORMATS;
export const IMAGE_FORMATS = Object.keys(FORMATS) as ImageFormat[];
