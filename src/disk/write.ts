/**
 * tree -> staging directory -> a disk image through the format's own mkfs tool. The image
 * is a FileToWrite, so build replaces it and its .why together (writeFilesAtomically).
 */
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FileToWrite } from "../output/atomic.js";
import { contentBytes, type Tree } from "../tree/tree.js";
import { checkRoom } from "../util/budget.js";
import { UserError } from "../util/errors.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";
import { writeErofs } from "./erofs.js";
import { writeExt4 } from "./ext4.js";
import type { DiskFormat } from "./formats.js";
import { writeSquashfs } from "./squashfs.js";
import { stageTree, type Xattrs } from "./stage.js";

export interface DiskOptions {
  format: DiskFormat;
  output: string;
  /** Mtimes later than this are clamped to it; also the filesystem's own timestamps. */
  epoch: number;
  /** ext4 only: the image size (default: the content plus EXT4_MARGIN). */
  sizeBytes?: number;
  /** Where inodes' xattrs come from (default: the tree's). */
  xattrs?: Xattrs;
}

/**
 * Calls `fn` with the image as a FileToWrite for `o.output` (staged and made when its turn
 * comes); the staging directory is removed afterwards, whatever happens.
 */
export async function withDiskFile<T>(
  tree: Tree,
  o: DiskOptions,
  fn: (file: FileToWrite) => Promise<T>,
): Promise<T> {
  checkSizeOption(o.format, o.sizeBytes);
  const work = await mkdtemp(join(tmpdir(), "slimroot-stage-"));
  trackTempPath(work);
  try {
    return await fn({
      target: o.output,
      write: async (tmp) => {
        // Created here, so an unwritable directory is our one-line error, not a tool's.
        await (await open(tmp, "wx", 0o644).catch(outputError(o.output))).close();
        // Staging copies every body: room for all of them, or one line now.
        checkRoom(work, contentBytes(tree));
        const staged = await stageTree(tree, work, o.epoch, o.xattrs);
        const w = { output: o.output, epoch: o.epoch };
        if (o.format === "ext4")
          await writeExt4(staged, tmp, { ...w, ...(o.sizeBytes ? { sizeBytes: o.sizeBytes } : {}) });
        else if (o.format === "erofs") await writeErofs(staged, tmp, w);
        else await writeSquashfs(staged, tmp, w);
      },
    });
  } finally {
    await rm(work, { recursive: true, force: true });
    untrackTempPath(work);
  }
}

function outputError(output: string) {
  return (err: NodeJS.ErrnoException): never => {
    if (err.code === "EACCES" || err.code === "ENOENT" || err.code === "EROFS" || err.code === "EPERM")
      throw new UserError(`${output}: cannot write here (${err.code})`);
    if (err.code === "ENOSPC") throw new UserError(`${output}: no space left on the output's filesystem`);
    throw err;
  };
}

/** `--size` is ext4's: the other formats are as big as their content. */
export function checkSizeOption(format: string, sizeBytes: number | undefined): void {
  if (sizeBytes !== undefined && format !== "ext4")
    throw new UserError(`--size: only for ext4 (${format} images are as big as their content)`);
}
