/**
 * The disk formats' magic bytes and the identity read beside them (identity.ts says what an
 * identity is). "What is this file?" belongs to artifact/ (identify): only artifact/ and
 * compress/ import this module (a rule of .dependency-cruiser.cjs).
 */
import type { DiskIdentity } from "./identity.js";

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
