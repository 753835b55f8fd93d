/**
 * tree -> staging directory -> a disk image through the format's own mkfs tool -> output,
 * replaced atomically.
 */
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Tree } from "../tree/tree.js";
import { replaceAtomically } from "../util/atomic-file.js";
import { UserError } from "../util/errors.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";
import { writeErofs } from "./erofs.js";
import { writeExt4 } from "./ext4.js";
import type { DiskFormat, ImageFormat } from "./formats.js";
import { writeSquashfs } from "./squashfs.js";
import { stageTree, type Xattrs } from "./stage.js";

export interface DiskOptions {
  format: DiskFormat;
  output: string;
  /** Mtimes later than this are clamped to it; also the filesystem's own timestamps. */
  epoch: number;
  /** ext4 only: the image size (default: the content plus EXT4_MARGIN). */
  sizeBytes?: number;
  verify?: (image: string) => Promise<void>;
  /** Where inodes' xattrs come from (default: the tree's). */
  xattrs?: Xattrs;
}

/** Writes the image; returns its size in bytes. */
export async function writeDisk(tree: Tree, o: DiskOptions): Promise<number> {
  checkSizeOption(o.format, o.sizeBytes);
  const work = await mkdtemp(join(tmpdir(), "slimroot-stage-"));
  trackTempPath(work);
  try {
    const staged = await stageTree(tree, work, o.epoch, o.xattrs);
    await replaceAtomically(
      o.output,
      async (tmp) => {
        // Created here, so an unwritable directory is our one-line error, not a tool's.
        await (await open(tmp, "wx", 0o644)).close();
        const w = { output: o.output, epoch: o.epoch };
        if (o.format === "ext4")
          await writeExt4(staged, tmp, { ...w, ...(o.sizeBytes ? { sizeBytes: o.sizeBytes } : {}) });
        else if (o.format === "erofs") await writeErofs(staged, tmp, w);
        else await writeSquashfs(staged, tmp, w);
      },
      o.verify,
    ).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "EACCES" || err.code === "ENOENT" || err.code === "EROFS")
        throw new UserError(`${o.output}: cannot write here (${err.code})`);
      if (err.code === "ENOSPC") throw new UserError(`${o.output}: no space left on the output's filesystem`);
      throw err;
    });
    return (await stat(o.output)).size;
  } finally {
    await rm(work, { recursive: true, force: true });
    untrackTempPath(work);
  }
}

/** `--size` is ext4's: the other formats are as big as their content. */
export function checkSizeOption(format: ImageFormat, sizeBytes: number | undefined): void {
  if (sizeBytes !== undefined && format !== "ext4")
    throw new UserError(`--size: only for ext4 (${format} images are as big as their content)`);
}
