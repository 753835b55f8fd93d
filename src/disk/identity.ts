/**
 * What `slimroot run` needs to know about a disk image file: its filesystem, and bytes that
 * identify it on the guest's disks (init/root.c finds the device whose bytes at `offset`
 * are `id`). ext4 and erofs: the UUID (which our builds derive from the content). squashfs
 * has no UUID: its 96-byte superblock (counts, sizes, table offsets, build time) stands in.
 */
import type { DiskFormat } from "./formats.js";

export interface DiskIdentity {
  format: DiskFormat;
  /** The kernel's name for the filesystem (mount -t). */
  fstype: string;
  offset: number;
  id: Buffer;
}

/** Read-only formats: always under an overlay; ext4 only with --read-only. */
export function isReadOnlyFormat(f: DiskFormat): boolean {
  return f !== "ext4";
}
