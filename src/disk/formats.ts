/** The disk image formats (src/pipeline/formats.ts has them all), and how an output name picks one. */
export type DiskFormat = "ext4" | "erofs" | "squashfs";

/**
 * The host tools each format's writer runs: its mkfs (and ext4's debugfs) under fakeroot,
 * and setfattr inside that session for xattrs (checked for every disk build, so a missing one
 * is said before the build, not after the image is read).
 */
export const DISK_TOOLS: Readonly<Record<DiskFormat, readonly string[]>> = {
  ext4: ["fakeroot", "setfattr", "mke2fs", "debugfs"],
  erofs: ["fakeroot", "setfattr", "mkfs.erofs"],
  squashfs: ["fakeroot", "setfattr", "mksquashfs"],
};

/** .ext4, .erofs, .sqfs/.squashfs; anything else is not a disk name (build's default: cpio). */
export function diskFormatForFileName(name: string): DiskFormat | undefined {
  if (/\.ext4$/i.test(name)) return "ext4";
  if (/\.erofs$/i.test(name)) return "erofs";
  if (/\.(sqfs|squashfs)$/i.test(name)) return "squashfs";
  return undefined;
}
