/** The image formats `slimroot build` writes, and how the output's name picks one. */
export type DiskFormat = "ext4" | "erofs" | "squashfs";
export type ImageFormat = "cpio" | DiskFormat;
export const IMAGE_FORMATS: readonly ImageFormat[] = ["cpio", "ext4", "erofs", "squashfs"];

/** .ext4, .erofs, .sqfs/.squashfs; anything else is an initramfs (cpio). */
export function formatForFileName(name: string): ImageFormat {
  if (/\.ext4$/i.test(name)) return "ext4";
  if (/\.erofs$/i.test(name)) return "erofs";
  if (/\.(sqfs|squashfs)$/i.test(name)) return "squashfs";
  return "cpio";
}

export function isDiskFormat(f: ImageFormat): f is DiskFormat {
  return f !== "cpio";
}
