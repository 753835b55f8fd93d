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
 * kernel(M) (keptMiB) is what the kernel has reserved for itself when it mounts
 * the rootfs (its image with the init sections, its page structs, early tables; on Debian's
 * arm64 kernel probably also its 64 MiB CMA area, handed to the kernel only later). It
 * depends on the kernel, so it is measured per kernel (MEASURED below, keyed on the kernel's
 * identity: kernel/identity.ts), from the rootfs `size=` the kernel chose for a ~1 MiB initrd at several
 * -m values (the initrd is not counted in the RAM the tmpfs limit is taken from: a 161 MiB
 * initrd at -m 1024 gave exactly that much less). docs/run.md has the numbers.
 *
 * A kernel not in the table gets the largest share measured on its architecture (Debian's),
 * an estimate, with a warning; a --mem for it is refused only when the files
 * alone cannot fit.
 */
import { stat } from "node:fs/promises";
import type { Arch } from "../arch/arch.js";
import { readArchiveFile } from "../artifact/initramfs.js";
import type { KernelKind } from "../artifact/kernel.js";
import { FootprintCounter, PAGE } from "../cpio/footprint.js";
import type { CpioEntry } from "../cpio/reader.js";
import { type KernelConfig, readKernelConfig } from "../kernel/config.js";
import {
  type KernelBuilder,
  type KernelIdentity,
  type KnownAboutKernel,
  readKernelIdentity,
} from "../kernel/identity.js";
import { UserError } from "../util/errors.js";

const MiB = 1 << 20;

/**
 * What a kernel keeps for itself when it mounts the rootfs: fixed MiB + RAM / perRam +
 * perSectionMiB for each 128 MiB memory section begun (see keptMiB).
 */
export interface KernelShare {
  fixedMiB: number;
  perRam?: number;
  perSectionMiB?: number;
}

/** Linux's memory sections on x86-64 and on arm64 with 4 KiB pages (SECTION_SIZE_BITS 27). */
const SECTION_MIB = 128;

/**
 * MiB a kernel keeps of `mib` of RAM. Its page structs (64 bytes per 4 KiB page) come a
 * section at a time: 2 MiB for each 128 MiB begun, a step, which a fit by RAM / perRam
 * (Debian's numbers) only approximates.
 */
export function keptMiB(k: KernelShare, mib: number): number {
  return k.fixedMiB + (k.perRam ? mib / k.perRam : 0) + (k.perSectionMiB ?? 0) * Math.ceil(mib / SECTION_MIB);
}

export interface KernelRule extends KernelShare {
  /** For messages: which kernel the numbers are for. */
  name: string;
  /** The kernel's page size (bytes): the unit files are rounded up to in the tmpfs. */
  pageSize: number;
  /** Measured on this kernel; false: an estimate (see unknownKernelRule). */
  measured: boolean;
}

interface MeasuredKernel extends KernelShare {
  name: string;
  arch: Arch;
  builder: KernelBuilder;
  release: RegExp;
  /** What its config must not turn on for the numbers to hold (when the config is known). */
  unlike?: (c: KernelConfig) => string | undefined;
}

/**
 * Options the measured slimroot kernels lack that reserve memory at boot (CMA's area, KASAN's
 * shadow, page_ext, DEBUG_PAGEALLOC) or make another kind of kernel (MODULES): a user fragment
 * that turns one on makes the kernel an unmeasured one.
 */
function slimrootUnlike(c: KernelConfig): string | undefined {
  for (const o of ["CMA", "KASAN", "PAGE_EXTENSION", "DEBUG_PAGEALLOC", "MODULES"])
    if (c.get(o) === "y") return `CONFIG_${o}`;
  return undefined;
}

/**
 * The measured kernels, all under QEMU 7.2 with TCG, 4 KiB pages, from the rootfs size= at
 * each -m (docs/run.md, "Guest memory"). fixedMiB is rounded up from the fit, so that the
 * prediction is at or above every measured point.
 *
 * - Debian 12's cloud kernels 6.1.0-57, 2026-11-29, -m 256/512/1024/2048 (amd64), 256/1024
 *   (arm64): amd64 (-M microvm) 41.5 MiB + M/58.5, arm64 (-M virt) 91.8 + M/52.2; fixed
 *   rounded up by 2 MiB after a 162 MiB image predicted to unpack from 538 MiB up failed at 530
 *   and booted at 544. Re-checked 2026-12-02 by bisection on an 82 MiB image: amd64 296 MiB
 *   (rule 297), arm64 346 (rule 347). Matched by release (6.1.0-N-cloud-ARCH) and builder
 *   (Debian's packages).
 * - slimroot's kernels (kernel build, linux-source-6.1 6.1.192-3, tinyconfig + src/kernel/config),
 *   2026-12-02, -m 32/48/64/128/256/512/1024/2048, 8 boots each: the kernel kept amd64 15.3 MiB
 *   at 32 to 44.2 at 2048, arm64 8.9 to 37.8, in steps: 2 MiB of page structs (64 bytes per
 *   4 KiB page) per 128 MiB memory section begun, so the most just above each multiple of 128
 *   (amd64 19.6 at 266). Bounded above by 14.5 MiB (amd64) and 8 (arm64) + 2 MiB per section
 *   begun, at least 0.4 MiB above every point. Checked with bench's least-RAM bisection
 *   (scripts/memory-fit.ts) on an 82 MiB image of random data: amd64 unpacked it from 266 MiB
 *   up (265 failed), arm64 from 259 (258 failed); the rule says 267 and 260; on a 10 MiB one
 *   52 and 45 against 53 and 46. Matched by builder (a kernel directory of
 *   `kernel build`, or a kernel carrying an embedded app) and release 6.1.x, unless its config
 *   turns on one of slimrootUnlike's options.
 */
const MEASURED: readonly MeasuredKernel[] = [
  {
    name: "Debian 12 cloud kernel 6.1 (amd64)",
    arch: "amd64",
    builder: "debian",
    release: /^6\.1\.0-\d+-cloud-amd64$/,
    fixedMiB: 44,
    perRam: 58,
  },
  {
    name: "Debian 12 cloud kernel 6.1 (arm64)",
    arch: "arm64",
    builder: "debian",
    release: /^6\.1\.0-\d+-cloud-arm64$/,
    fixedMiB: 94,
    perRam: 52,
  },
  {
    name: "slimroot kernel 6.1 (amd64)",
    arch: "amd64",
    builder: "slimroot",
    release: /^6\.1\.\d+$/,
    fixedMiB: 14.5,
    perSectionMiB: 2,
    unlike: slimrootUnlike,
  },
  {
    name: "slimroot kernel 6.1 (arm64)",
    arch: "arm64",
    builder: "slimroot",
    release: /^6\.1\.\d+$/,
    fixedMiB: 8,
    perSectionMiB: 2,
    unlike: slimrootUnlike,
  },
];

/**
 * For a kernel not measured: the largest share measured on its architecture (Debian's cloud
 * kernel: modules, CMA on arm64, a large image), so that a distribution kernel like it fits;
 * a larger one may not (--mem then). Only an estimate: the default it gives comes with a warning.
 */
export function unknownKernelRule(arch: Arch, pageSize = PAGE, why = "an unmeasured kernel"): KernelRule {
  const largest = MEASURED.filter((k) => k.arch === arch).sort(
    (a, b) => keptMiB(b, 1024) - keptMiB(a, 1024),
  )[0]!;
  return {
    name: why,
    fixedMiB: largest.fixedMiB,
    ...(largest.perRam ? { perRam: largest.perRam } : {}),
    ...(largest.perSectionMiB ? { perSectionMiB: largest.perSectionMiB } : {}),
    pageSize,
    measured: false,
  };
}

/** The rule for the kernel `id` is: its measured numbers, or the estimate for an unknown one. */
export function kernelRule(id: KernelIdentity): KernelRule {
  const what = [
    id.release ? `release ${id.release}` : "release unknown",
    id.builder ? `built by ${id.builder}` : "builder unknown",
  ].join(", ");
  for (const k of MEASURED) {
    if (k.arch !== id.arch || k.builder !== id.builder || !id.release || !k.release.test(id.release))
      continue;
    const unlike = id.config && k.unlike?.(id.config);
    if (unlike) return unknownKernelRule(id.arch, id.pageSize, `${what}, with ${unlike}`);
    // Measured with 4 KiB pages: the page structs of larger pages take less, files more (counted).
    if (id.pageSize !== PAGE) break;
    const { name, fixedMiB, perRam, perSectionMiB } = k;
    return {
      name,
      fixedMiB,
      ...(perRam ? { perRam } : {}),
      ...(perSectionMiB ? { perSectionMiB } : {}),
      pageSize: PAGE,
      measured: true,
    };
  }
  const pages = id.pageSizeKnown ? `${id.pageSize / 1024} KiB pages` : "page size unknown, 4 KiB assumed";
  return unknownKernelRule(id.arch, id.pageSize, `${what}, ${pages}`);
}

/** The rule for the kernel file `path`: its identity read from the file and what is known beside it. */
export async function readKernelRule(
  path: string,
  kind: KernelKind,
  known: KnownAboutKernel & { configFile?: string } = {},
): Promise<KernelRule> {
  const { configFile, ...rest } = known;
  const config = rest.config ?? (configFile ? await readKernelConfig(configFile) : undefined);
  return kernelRule(await readKernelIdentity(path, kind, { ...rest, ...(config ? { config } : {}) }));
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
  /** tmpfsBytes with 16 and 64 KiB pages (an arm64 kernel's other page sizes). */
  largePages?: Readonly<Record<number, number>>;
}

/** The bytes the files take in a tmpfs of `pageSize` pages, or as inodes when those are tighter. */
function filesBytes(f: Footprint, pageSize: number): number {
  // Without a count for this size: each file (at most one per inode) rounds up by less than a page more.
  const bytes =
    pageSize === PAGE
      ? f.tmpfsBytes
      : (f.largePages?.[pageSize] ?? f.tmpfsBytes + f.inodes * (pageSize - PAGE));
  return Math.max(bytes, f.inodes * pageSize);
}

/** Reads every entry of each (possibly compressed) newc archive and adds up their tmpfs footprint. */
export async function archivesFootprint(files: readonly string[], initrdBytes: number): Promise<Footprint> {
  return entriesFootprint(
    // Sizes are in the headers: no body is copied out.
    files.map((f) => readArchiveFile(f, undefined, { body: () => false })),
    initrdBytes,
  );
}

/**
 * The tmpfs footprint of archives given as their entries (hard links are counted within each
 * archive). Only headers are read: a file's size is its header's, so bodies may be skipped.
 */
export async function entriesFootprint(
  archives: readonly (AsyncIterable<CpioEntry> | Iterable<CpioEntry>)[],
  initrdBytes: number,
): Promise<Footprint> {
  const counter = new FootprintCounter();
  for (const archive of archives) {
    counter.nextArchive();
    for await (const e of archive) counter.add(e);
  }
  return { ...counter.result(), initrdBytes };
}

/** The tmpfs footprint and initrd size of files joined into one initrd (see joinInitrd). */
export async function initrdFootprint(archives: readonly string[], initrd: string): Promise<Footprint> {
  return archivesFootprint(archives, (await stat(initrd)).size);
}

/**
 * The least guest memory (MiB) whose rootfs holds the image's files with `headroomMiB` to
 * spare, on `kernel` (an unmeasured kernel: the estimate). With no headroom and a measured
 * kernel, below it the kernel cannot unpack the image at all: a --mem below it is refused.
 */
export function memoryNeededMiB(
  f: Footprint,
  arch: Arch,
  headroomMiB = 0,
  kernel: KernelRule = unknownKernelRule(arch),
): number {
  const filesMiB = filesBytes(f, kernel.pageSize) / MiB;
  const held = f.initrdBytes / MiB + 2 * (filesMiB + headroomMiB);
  // The least M with M >= held + kept(M): kept only grows with M, so from below the first
  // M that holds its own kept share is the least.
  let m = Math.ceil(held + kernel.fixedMiB);
  for (;;) {
    const want = Math.ceil(held + keptMiB(kernel, m));
    if (want <= m) return m;
    m = want;
  }
}

/** Below this --mem is refused: the measured minimum, or for an unmeasured kernel the files alone (it keeping nothing). */
export function memoryRefusedBelowMiB(
  f: Footprint,
  arch: Arch,
  kernel: KernelRule = unknownKernelRule(arch),
): number {
  if (kernel.measured) return memoryNeededMiB(f, arch, 0, kernel);
  return Math.ceil(f.initrdBytes / MiB + (2 * filesBytes(f, kernel.pageSize)) / MiB);
}

/**
 * The default guest memory: what leaves the rootfs its headroom, plus the app's margin, in
 * 32 MiB steps.
 */
export function defaultMemoryMiB(
  f: Footprint,
  arch: Arch,
  kernel: KernelRule = unknownKernelRule(arch),
): number {
  const want = memoryNeededMiB(f, arch, ROOTFS_HEADROOM_MIB, kernel) + APP_MARGIN_MIB;
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
  kernel: KernelRule = unknownKernelRule(arch),
): number {
  if (requested === undefined) return defaultMemoryMiB(f, arch, kernel);
  const need = memoryRefusedBelowMiB(f, arch, kernel);
  if (requested < need) {
    const files = `${Math.ceil(filesBytes(f, kernel.pageSize) / MiB)} MiB of files`;
    const why = kernel.measured
      ? `its ${files} are unpacked into RAM, into a tmpfs the kernel limits to half of it`
      : `its ${files} alone, unpacked into a tmpfs limited to half of the RAM`;
    throw new MemoryTooSmall(
      `--mem ${requested}: ${image} needs at least ${need} MiB of guest memory (${why}); leave --mem out to size it from the image (${defaultMemoryMiB(f, arch, kernel)} MiB)`,
    );
  }
  return requested;
}

/**
 * The one-line warning for memory sized for a kernel the rule has not measured (`memMiB`
 * chosen, nothing requested); undefined otherwise.
 */
export function memoryWarning(
  kernel: KernelRule,
  kernelLabel: string,
  memMiB: number,
  requested: number | undefined,
): string | undefined {
  if (kernel.measured || requested !== undefined) return undefined;
  return `warning: kernel ${kernelLabel} (${kernel.name}) is not one whose memory use slimroot has measured: ${memMiB} MiB of guest memory is an estimate (as for Debian's cloud kernel); --mem overrides`;
}
