/**
 * What `slimroot run` needs to know about a disk image file: its filesystem, and bytes that
 * identify it on the guest's disks (init/root.c finds the device whose bytes at `offset`
 * are `id`). ext4 and erofs: the UUID (which our builds derive from the content). squashfs
 * has no UUID: its 96-byte superblock (counts, sizes, table offsets, build time) stands in.
 */
import type { DiskFormat } from "./formats.js";
import { SQUASHFS_COMPRESSION } from "./squashfs.js";

export interface DiskIdentity {
  format: DiskFormat;
  /** The kernel's name for the filesystem (mount -t). */
  fstype: string;
  offset: number;
  id: Buffer;
}

/**
 * Kernel options a disk of each format needs (built in or a module, unless it says `=y`):
 * the compressors are the ones our writers use (erofs.ts, squashfs.ts), and the xattr
 * support our writers keep (security.capability: without it a file capability is silently
 * not there, and a non-root app that binds port 80 fails with EACCES).
 */
export const KERNEL_NEEDS: Record<DiskFormat, readonly string[]> = {
  ext4: ["CONFIG_EXT4_FS", "CONFIG_EXT4_FS_SECURITY=y"],
  erofs: [
    "CONFIG_EROFS_FS",
    "CONFIG_EROFS_FS_ZIP=y",
    "CONFIG_LZ4_DECOMPRESS",
    "CONFIG_EROFS_FS_XATTR=y",
    "CONFIG_EROFS_FS_SECURITY=y",
  ],
  squashfs: [
    "CONFIG_SQUASHFS",
    `CONFIG_SQUASHFS_${SQUASHFS_COMPRESSION.toUpperCase()}=y`,
    "CONFIG_SQUASHFS_XATTR=y",
  ],
};

/** The options of KERNEL_NEEDS[format] that `config` (a kernel .config's text) lacks. */
export function missingKernelOptions(config: string, format: DiskFormat): string[] {
  return KERNEL_NEEDS[format].filter((need) => {
    const [name, want] = need.split("=");
    const got = new RegExp(`^${name}=(y|m)$`, "m").exec(config)?.[1];
    return want ? got !== want : !got;
  });
}

/** Read-only formats: always under an overlay; ext4 only with --read-only. */
export function isReadOnlyFormat(f: DiskFormat): boolean {
  return f !== "ext4";
}
