/**
 * squashfs with mksquashfs 4.5.1 under fakeroot (stage.ts). zstd: Debian's kernels build
 * SQUASHFS_ZSTD in (as XZ, LZ4, LZO and ZLIB), and it decompresses several times faster than
 * xz, which matters for a root read at every exec under TCG. Mtimes stay the clamped ones of
 * the tree; -mkfs-time and -reproducible make the rest of the bytes fixed.
 */
import { type Staged, underFakeroot } from "./stage.js";
import { runTool } from "./tool.js";

export const SQUASHFS_COMPRESSION = "zstd";

export async function writeSquashfs(
  s: Staged,
  tmp: string,
  o: { output: string; epoch: number },
): Promise<void> {
  const args = [
    s.root,
    tmp,
    "-noappend",
    "-comp",
    SQUASHFS_COMPRESSION,
    "-mkfs-time",
    String(o.epoch),
    "-reproducible",
    "-quiet",
    "-no-progress",
  ];
  await runTool(...underFakeroot(s, "mksquashfs", args), {
    output: o.output,
    // mksquashfs 4.5.1 refuses SOURCE_DATE_EPOCH next to -mkfs-time, and would stamp every
    // file with it: the epoch comes from us, as -mkfs-time.
    unset: ["SOURCE_DATE_EPOCH"],
  });
}
