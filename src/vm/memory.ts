/**
 * How much guest memory an image needs. An initramfs lives in RAM: the kernel unpacks it into
 * the rootfs, a tmpfs whose size limit (blocks and inodes alike) is half of the RAM the
 * kernel counts when it mounts it, and at that moment the initrd itself is still held in
 * memory. So a guest of M MiB can unpack an image only when
 *
 *     (M - kernel(M) - initrd) / 2  >=  files + headroom
 *
 * where `files` is the image's tmpfs footprint (regular files rounded up to pages, a page
 * per long symlink; or one page per inode when the inode limit is the tighter one).
 *
 * kernel(M), measured on Debian 12's cloud kernels under QEMU 7.2 (TCG, 2026-11-29), from
 * the rootfs `size=` the kernel chose for a 1.4 MiB initrd at -m 256/512/1024/2048:
 * amd64 keeps 41.5 MiB plus 1/58.5 of the RAM (its page structs) for itself, arm64 (-M virt)
 * 91.8 MiB plus 1/52.2 (its Image is uncompressed and larger). The initrd is not counted in
 * the RAM the tmpfs limit is taken from (a 161 MiB initrd at -m 1024 gave exactly that much
 * less). docs/run.md has the numbers.
 */
import { stat } from "node:fs/promises";
import type { Arch } from "../arch/arch.js";
import { readArchiveFile } from "../artifact/initramfs.js";
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from "../cpio/newc.js";
import { UserError } from "../util/errors.js";

const MiB = 1 << 20;
const PAGE = 4096;
/** tmpfs keeps a symlink target shorter than this inline, a longer one in a page (mm/shmem.c). */
const SHORT_SYMLINK_LEN = 128;

/**
 * What the kernel keeps for itself: fixed MiB + RAM / perRam. Measured (see above), fixed
 * rounded up by 2 MiB: a 162 MiB image predicted to unpack from 538 MiB up did so at 544 and
 * failed ("Initramfs unpacking failed: write error") at 530, its rootfs 1 MiB smaller than
 * the unrounded fit said.
 */
const KERNEL: Record<Arch, KernelShare> = {
  amd64: { fixedMiB: 44, perRam: 58 },
  arm64: { fixedMiB: 94, perRam: 52 },
};

interface KernelShare {
  fixedMiB: number;
  perRam: number;
}

/**
 * For a kernel with everything built in (slimroot kernel build, or the user's own), not
 * measured per kernel: only what any kernel keeps (its page structs and a few MiB), so a
 * --mem is refused only when the files alone cannot fit. Those kernels run in far less RAM
 * than Debian's, and a least-RAM search must be able to find that.
 */
const SMALL_KERNEL: KernelShare = { fixedMiB: 4, perRam: 64 };

/** Debian's modular cloud kernel (one that takes a modules archive) or any other. */
export type KernelClass = "modular" | "built-in";

function share(arch: Arch, kernel: KernelClass): KernelShare {
  return kernel === "modular" ? KERNEL[arch] : SMALL_KERNEL;
}

/** Free space left in the rootfs after unpacking: the init's /etc files, the app's writes. */
export const ROOTFS_HEADROOM_MIB = 16;
/** The default gives the app at least this much on top of what unpacking needs. */
export const APP_MARGIN_MIB = 64;
/** The smallest default (what `run` always used; enough for Debian's kernel and a small app). */
export const MIN_DEFAULT_MIB = 256;

/** --mem below what the image needs: bad input (`run` reports every launch failure as 125). */
export class MemoryTooSmall extends UserError {}

export interface Footprint {
  /** Bytes the unpacked files take in the rootfs tmpfs (page-rounded). */
  tmpfsBytes: number;
  /** Entries (inodes) in the archives. */
  inodes: number;
  /** Bytes of the initrd QEMU loads (all parts, as compressed). */
  initrdBytes: number;
}

/** Reads every entry of each (possibly compressed) newc archive and adds up their tmpfs footprint. */
export async function archivesFootprint(files: readonly string[], initrdBytes: number): Promise<Footprint> {
  let tmpfsBytes = 0;
  let inodes = 0;
  for (const file of files) {
    const seen = new Set<string>();
    for await (const e of readArchiveFile(file)) {
      const type = e.mode & S_IFMT;
      // Hard links share an inode; newc stores the body once, with one of the links.
      const key = e.nlink > 1 && type !== S_IFDIR ? `${e.devMajor}:${e.devMinor}:${e.ino}` : undefined;
      if (key === undefined || !seen.has(key)) inodes++;
      if (key !== undefined) seen.add(key);
      if (type === S_IFREG) tmpfsBytes += Math.ceil(e.body.length / PAGE) * PAGE;
      else if (type === S_IFLNK && e.body.length >= SHORT_SYMLINK_LEN) tmpfsBytes += PAGE;
    }
  }
  return { tmpfsBytes, inodes, initrdBytes };
}

/** The tmpfs footprint and initrd size of files joined into one initrd (see joinInitrd). */
export async function initrdFootprint(archives: readonly string[], initrd: string): Promise<Footprint> {
  return archivesFootprint(archives, (await stat(initrd)).size);
}

/**
 * The least guest memory (MiB) whose rootfs holds the image's files with `headroomMiB` to
 * spare. With no headroom: below it the kernel cannot unpack the image at all, so a --mem
 * below it is refused (a least-RAM search such as `slimroot bench`'s still finds the real floor
 * above it).
 */
export function memoryNeededMiB(
  f: Footprint,
  arch: Arch,
  headroomMiB = 0,
  kernel: KernelClass = "modular",
): number {
  const k = share(arch, kernel);
  const filesMiB = Math.max(f.tmpfsBytes, f.inodes * PAGE) / MiB;
  const fixed = k.fixedMiB + f.initrdBytes / MiB + 2 * (filesMiB + headroomMiB);
  // M - fixed - M/perRam >= 0
  return Math.ceil((fixed * k.perRam) / (k.perRam - 1));
}

/**
 * The default guest memory: what leaves the rootfs its headroom, plus the app's margin, in
 * 32 MiB steps.
 */
export function defaultMemoryMiB(f: Footprint, arch: Arch): number {
  const want = memoryNeededMiB(f, arch, ROOTFS_HEADROOM_MIB) + APP_MARGIN_MIB;
  return Math.max(MIN_DEFAULT_MIB, Math.ceil(want / 32) * 32);
}

/**
 * The guest memory for a boot: `requested` when it is enough (else a one-line error naming
 * what is needed), the default otherwise.
 */
export function chooseMemoryMiB(
  f: Footprint,
  arch: Arch,
  requested: number | undefined,
  image: string,
  kernel: KernelClass = "modular",
): number {
  // The default is sized for Debian's kernel whatever boots: generous costs nothing but RAM.
  if (requested === undefined) return defaultMemoryMiB(f, arch);
  const need = memoryNeededMiB(f, arch, 0, kernel);
  if (requested < need) {
    throw new MemoryTooSmall(
      `--mem ${requested}: ${image} needs at least ${need} MiB of guest memory (its ${Math.ceil(
        f.tmpfsBytes / MiB,
      )} MiB of files are unpacked into RAM, into a tmpfs the kernel limits to half of it); leave --mem out to size it from the image (${defaultMemoryMiB(f, arch)} MiB)`,
    );
  }
  return requested;
}
