/** The disk image formats (src/pipeline/formats.ts has them all), and how an output name picks one. */
export type DiskFormat = "ext4" | "erofs" | "squashfs";

/** .ext4, .erofs, .sqfs/.squashfs; anything else is not a disk name (build's default: cpio). */
export function diskFormatForFileName(name: string): DiskFormat | undefined {
  if (/\.ext4$/i.test(name)) return "ext4";
  if (/\.erofs$/i.test(name)) return "erofs";
  if (/\.(sqfs|squashfs)$/i.test(name)) return "squashfs";
  return undefined;
}
