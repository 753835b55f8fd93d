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

const EXT4_MAGIC_AT = 1024 + 0x38;
const EXT4_UUID_AT = 1024 + 0x68;
const EROFS_MAGIC = 0xe0f5e1e2;
const EROFS_UUID_AT = 1024 + 0x30;
const SQUASHFS_MAGIC = 0x73717368; // "hsqs"
const SQUASHFS_SUPERBLOCK = 96;

/** How many leading bytes diskIdentityOf needs. */
export const DISK_HEAD_BYTES = 2048;

/** The identity of the disk whose first bytes are `b` (at least DISK_HEAD_BYTES of them). */
export function diskIdentityOf(b: Buffer): DiskIdentity | undefined {
  if (b.length >= SQUASHFS_SUPERBLOCK && b.readUInt32LE(0) === SQUASHFS_MAGIC)
    return {
      format: "squashfs",
      fstype: "squashfs",
      offset: 0,
      id: Buffer.from(b.subarray(0, SQUASHFS_SUPERBLOCK)),
    };
  if (b.length >= 2048 && b.readUInt16LE(EXT4_MAGIC_AT) === 0xef53)
    return {
      format: "ext4",
      fstype: "ext4",
      offset: EXT4_UUID_AT,
      id: Buffer.from(b.subarray(EXT4_UUID_AT, EXT4_UUID_AT + 16)),
    };
  if (b.length >= 2048 && b.readUInt32LE(1024) === EROFS_MAGIC)
    return {
      format: "erofs",
      fstype: "erofs",
      offset: EROFS_UUID_AT,
      id: Buffer.from(b.subarray(EROFS_UUID_AT, EROFS_UUID_AT + 16)),
    };
  return undefined;
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
