/**
 * A kernel image's magic bytes. "What is this file?" is asked through identify: only artifact/
 * and compress/ import this module (a rule of .dependency-cruiser.cjs); others take
 * identify's KernelArtifact (kernelKindOf).
 */
import { gunzipSync, constants as zc } from "node:zlib";
import { detectCompression } from "../compress/magic.js";
import { elfArch } from "../elf/elf.js";
import type { KernelKind } from "./kernel.js";

/** How many leading bytes `kernelKind` needs. */
export const KERNEL_HEAD_BYTES = 4096;

/**
 * What kind of kernel image `head` (its first bytes) starts: an x86 bzImage (the boot
 * protocol's "HdrS" at 0x202; a PE/EFI stub may precede it, hence checked first), an ELF
 * vmlinux (e_machine), or an arm64 `Image` ("ARM\x64" at 56). A gzip-compressed arm64 Image
 * (Image.gz, which QEMU also boots) is looked into. Undefined when it is none of these.
 */
export function kernelKind(head: Buffer): KernelKind | undefined {
  if (head.length >= 0x206 && head.toString("latin1", 0x202, 0x206) === "HdrS") {
    return { arch: "amd64", format: "bzImage" };
  }
  const elf = elfArch(head);
  if (elf) return { arch: elf, format: "elf" };
  if (head.length >= 60 && head.readUInt32LE(56) === 0x644d5241)
    return { arch: "arm64", format: "arm64-image" };
  if (detectCompression(head) === "gzip") {
    try {
      // A prefix of the stream: inflate what is there instead of failing on the missing end.
      const inner = gunzipSync(head, { finishFlush: zc.Z_SYNC_FLUSH });
      const kind = inner.length >= 60 && inner.readUInt32LE(56) === 0x644d5241;
      if (kind) return { arch: "arm64", format: "arm64-image", gzip: true };
    } catch {
      return undefined;
    }
  }
  return undefined;
}
