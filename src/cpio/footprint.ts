/**
 * What an archive's entries take once the kernel has unpacked them into the rootfs, a tmpfs:
 * each regular file rounded up to pages, a page for a long symlink, an inode per entry (the
 * names of a hard link share one, within an archive). Counted from newc headers: as the writer
 * encodes them (the build records the result in the image's .why) or as a reader reads them
 * (vm/memory.ts), so both count the same.
 */
import { type NewcHeader, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from "./newc.js";

export const PAGE = 4096;
/** The page sizes a Linux guest may use besides 4 KiB (arm64's 16 and 64 KiB pages). */
export const LARGE_PAGES = [16384, 65536] as const;
/** tmpfs keeps a symlink target shorter than this inline, a longer one in a page (mm/shmem.c). */
const SHORT_SYMLINK_LEN = 128;

export interface TmpfsFootprint {
  /** Bytes the unpacked files take in the rootfs tmpfs (4 KiB pages). */
  tmpfsBytes: number;
  /** Entries (inodes). */
  inodes: number;
  /** tmpfsBytes with each of LARGE_PAGES (an arm64 kernel's other page sizes). */
  largePages: Readonly<Record<number, number>>;
}

type Counted = Pick<NewcHeader, "mode" | "nlink" | "ino" | "devMajor" | "devMinor" | "fileSize">;

export class FootprintCounter {
  private tmpfsBytes = 0;
  private inodes = 0;
  private readonly large: Record<number, number> = Object.fromEntries(LARGE_PAGES.map((p) => [p, 0]));
  private linked = new Set<string>();

  /** The entries that follow are another archive's: its inode numbers are its own. */
  nextArchive(): void {
    this.linked = new Set();
  }

  add(e: Counted): void {
    const type = e.mode & S_IFMT;
    // Hard links share an inode; newc stores the body once, with one of the links.
    const key = e.nlink > 1 && type !== S_IFDIR ? `${e.devMajor}:${e.devMinor}:${e.ino}` : undefined;
    if (key === undefined || !this.linked.has(key)) this.inodes++;
    if (key !== undefined) this.linked.add(key);
    if (type === S_IFREG) this.pages(e.fileSize);
    else if (type === S_IFLNK && e.fileSize >= SHORT_SYMLINK_LEN) this.pages(1);
  }

  result(): TmpfsFootprint {
    return { tmpfsBytes: this.tmpfsBytes, inodes: this.inodes, largePages: { ...this.large } };
  }

  private pages(bytes: number): void {
    this.tmpfsBytes += Math.ceil(bytes / PAGE) * PAGE;
    for (const p of LARGE_PAGES) this.large[p]! += Math.ceil(bytes / p) * p;
  }
}
