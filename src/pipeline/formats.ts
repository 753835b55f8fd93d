import type { Duplex } from "node:stream";
import { type Compression, compressor } from "../compress/compress.js";
import { writeListDir } from "../cpio/list-dir.js";
import { writeCpio } from "../cpio/writer.js";
import type { Tree } from "../tree/tree.js";
import { writeFileAtomically } from "../util/atomic-file.js";
import { contentBytes, progressCounter } from "./progress.js";

/** What a writer needs besides the finished tree. */
export interface WriteOptions {
  output: string;
  /** Mtimes later than this are clamped to it. */
  epoch: number;
  compression: Compression;
  /** The source reference, for writers that record it. */
  source: string;
  verify?: (image: string) => Promise<void>;
  onWrite?: (p: { done: number; total: number }) => void;
}

/** One output format of `slimroot build --format`: tree in, output written atomically. */
export interface ImageWriter {
  /** Returns the bytes written. */
  write(tree: Tree, o: WriteOptions): Promise<number>;
  /** Whether the output is one image `slimroot run` (and build's verification boot) takes. */
  bootable: boolean;
  /** Whether --compress applies. */
  compressed: boolean;
}

/** Every format, by name. A new format is a writer module and a line here. */
export const FORMATS = {
  cpio: {
    bootable: true,
    compressed: true,
    write: (tree, o) => {
      const stages: Duplex[] = [compressor(o.compression)];
      if (o.onWrite) stages.unshift(progressCounter(contentBytes(tree), o.onWrite));
      return writeFileAtomically(o.output, writeCpio(tree, { clampMtime: o.epoch }), stages, 0o644, o.verify);
    },
  },
  "initramfs-list": {
    bootable: false,
    compressed: false,
    write: (tree, o) => writeListDir(tree, o.output, { clampMtime: o.epoch, source: o.source }),
  },
} satisfies Record<string, ImageWriter>;

export type ImageFormat = keyof typeof FORMATS;
export const IMAGE_FORMATS = Object.keys(FORMATS) as ImageFormat[];
