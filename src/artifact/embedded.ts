/**
 * The app a kernel file carries (`kernel build --embed`): its built-in initramfs, found in the
 * vmlinux (decompressed from a bzImage; an arm64 Image or ELF vmlinux as is). embed.ts puts it
 * in as an uncompressed cpio (kernels embedded before 2026-12-03: a gzip cpio with a plain
 * 10-byte gzip header); the kernel's own default initramfs (a bare /dev/console), the "070701"
 * the kernel's unpacker compares with and other gzip data (the IKCONFIG config) are no
 * slimroot image. Any other
 * kernel, such as a distribution's /boot/vmlinuz, carries no app: booting it alone would
 * panic, so it is refused with what to do instead.
 *
 * An ELF kernel is read where its own symbols put the archive (findEmbedded). Why not have
 * --embed record the facts `run` needs (app.conf, the memory footprint) somewhere cheaper:
 * they would be a second copy beside the archive, which a relink, an objcopy or a hand-edit
 * can change without them; read from the archive's own headers they cannot disagree with
 * what the kernel unpacks, and reading them costs no more than the symbol table does.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { inflateRawSync, constants as zc } from "node:zlib";
import { decodeHeader, HEADER_SIZE, pad4, TRAILER_NAME } from "../cpio/newc.js";
import { type CpioEntry, readCpio } from "../cpio/reader.js";
import { ElfFile } from "../elf/sections.js";
import { UserError } from "../util/errors.js";
import { FileChunks, openInput } from "../util/input-file.js";
import { factsBody, type InitramfsFacts, initramfsFacts } from "./initramfs.js";
import type { KernelKind } from "./kernel.js";
import { extractVmlinux } from "./vmlinux.js";

export interface EmbeddedApp {
  kind: KernelKind;
  /**
   * The built-in archive's entries, in order, every header read and checked; bodies only
   * those initramfsFacts reads (factsBody): what the memory plan counts (vm/memory.ts).
   */
  entries: readonly CpioEntry[];
  /** The bytes the kernel holds in RAM for it until it is unpacked (the archive as built in). */
  heldBytes: number;
}

/** What findEmbedded found: the archive's entries, its bytes held, what it says. */
export interface BuiltInApp {
  entries: readonly CpioEntry[];
  held: number;
  facts: InitramfsFacts;
}

/** A kernel file is at most this large (Debian's vmlinux is 60 MiB): a bound on what is read. */
const MAX_KERNEL_BYTES = 256 << 20;
/** gzip, deflate, no flags (what Node's gzip writes): then the deflate stream starts at 10. */
const GZIP_PLAIN = Buffer.from([0x1f, 0x8b, 0x08, 0x00]);
const NEWC = Buffer.from("070701");
/** The largest built-in image looked at (a kernel's init section holds it in RAM). */
const MAX_IMAGE_BYTES = 2 ** 31 - 1;

/** A built-in archive: uncompressed, and how many bytes it takes in the kernel. */
interface BuiltIn {
  cpio: Buffer;
  held: number;
}

/** The uncompressed cpio of each plain gzip stream in `vmlinux` that holds a newc archive. */
function* gzipCpios(vmlinux: Buffer): Generator<BuiltIn> {
  for (let at = vmlinux.indexOf(GZIP_PLAIN); at >= 0; at = vmlinux.indexOf(GZIP_PLAIN, at + 1)) {
    const stream = vmlinux.subarray(at + 10);
    try {
      // A look at the first bytes first: most matches are not a cpio (or not gzip at all).
      const head = inflateRawSync(stream.subarray(0, 1024), { finishFlush: zc.Z_SYNC_FLUSH });
      if (!head.subarray(0, 6).equals(NEWC)) continue;
      // The stream's own length is not known here: the kernel file's size bounds it (facts.ts).
      yield { cpio: inflateRawSync(stream, { maxOutputLength: MAX_IMAGE_BYTES }), held: 0 };
    } catch {}
  }
}

/** Each uncompressed newc archive in `vmlinux`, up to its trailer (a header that does not parse: not one). */
function* plainCpios(vmlinux: Buffer): Generator<BuiltIn> {
  for (let at = vmlinux.indexOf(NEWC); at >= 0; at = vmlinux.indexOf(NEWC, at + 1)) {
    let end = at;
    try {
      for (;;) {
        const h = decodeHeader(vmlinux.subarray(end, end + HEADER_SIZE));
        const name = vmlinux.toString("latin1", end + HEADER_SIZE, end + HEADER_SIZE + h.nameSize - 1);
        end += HEADER_SIZE + h.nameSize + pad4(HEADER_SIZE + h.nameSize);
        end += h.fileSize + pad4(h.fileSize);
        if (end > vmlinux.length) break;
        if (name === TRAILER_NAME) {
          yield { cpio: vmlinux.subarray(at, end), held: end - at };
          at = end - 1;
          break;
        }
      }
    } catch {}
  }
}

/** Candidates for the built-in image: uncompressed archives first (they need no inflating). */
function* builtInCpios(vmlinux: Buffer): Generator<BuiltIn> {
  yield* plainCpios(vmlinux);
  yield* gzipCpios(vmlinux);
}

/**
 * Where an ELF kernel's built-in archive is, as the kernel itself finds it: `__initramfs_size`
 * bytes at `__initramfs_start` (usr/initramfs_data.S, include/asm-generic/vmlinux.lds.h),
 * placed in the file by the section that holds each address. Undefined when the file says
 * none of that (stripped, not an ELF we read, out of bounds): the caller then looks through
 * the whole file.
 */
function symbolRange(elf: ElfFile): { start: number; end: number } | undefined {
  const sym = elf.symbols(["__initramfs_start", "__initramfs_size"]);
  const start = sym.get("__initramfs_start");
  const sizeWord = sym.get("__initramfs_size");
  if (start === undefined || sizeWord === undefined) return undefined;
  const at = elf.offsetOf(start);
  const word = elf.offsetOf(sizeWord);
  const wordBytes = elf.is64 ? 8 : 4;
  if (!at || !word || word.offset + wordBytes > word.end) return undefined;
  const w = elf.read(word.offset, wordBytes);
  const size = Number(
    elf.is64
      ? elf.le
        ? w.readBigUInt64LE(0)
        : w.readBigUInt64BE(0)
      : elf.le
        ? w.readUInt32LE(0)
        : w.readUInt32BE(0),
  );
  if (size === 0 || size > at.end - at.offset) return undefined;
  return { start: at.offset, end: at.offset + size };
}

/**
 * The archive in `entries` when it is a slimroot image for `kind`: every header read (a bad
 * or truncated one: not an image), bodies only for its facts.
 */
async function appIn(
  entries: AsyncIterable<CpioEntry>,
  held: number,
  kind: KernelKind,
  path: string,
): Promise<BuiltInApp | undefined> {
  try {
    const list: CpioEntry[] = [];
    for await (const e of entries) list.push(e);
    const facts = await initramfsFacts(list, path);
    return facts.arch === kind.arch ? { entries: list, held, facts } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The slimroot image built into kernel file `path` (of `kind`): its entries and what it says,
 * or undefined when the kernel carries none. An ELF kernel (what --embed writes on amd64) is
 * read only where its symbols put the archive, and of that only the headers and the bodies
 * the facts need: a 27.7 MB vmlinux with nginx built in is read for its 1.4 MB symbol table
 * and at most 16 KiB per entry, instead of whole and then written out and read back again
 * (README, "Cold start"). Any other kernel, or an ELF
 * whose symbols say nothing, is searched whole.
 */
export async function findEmbedded(
  path: string,
  kind: KernelKind,
  scratch: string,
): Promise<BuiltInApp | undefined> {
  const { fh, size } = await openInput(path);
  let image: Buffer;
  try {
    if (size > MAX_KERNEL_BYTES)
      throw new UserError(`${path}: ${size} bytes; a kernel file is at most ${MAX_KERNEL_BYTES}`);
    if (kind.format === "elf") {
      let range: { start: number; end: number } | undefined;
      try {
        range = symbolRange(new ElfFile(fh.fd, size));
      } catch {} // a damaged ELF: searched whole below, as any other kernel
      if (range) {
        const entries = readCpio(new FileChunks(fh, range.end, range.start), { body: factsBody });
        const found = await appIn(entries, range.end - range.start, kind, path);
        if (found) return found;
      }
    }
    image = await fh.readFile();
  } finally {
    await fh.close();
  }
  let vmlinux = image;
  if (kind.format === "bzImage") {
    const work = await mkdtemp(join(scratch, "vmlinux-"));
    try {
      await extractVmlinux(image, path, join(work, "vmlinux"));
      vmlinux = await readFile(join(work, "vmlinux"));
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
  for (const { cpio, held } of builtInCpios(vmlinux)) {
    const found = await appIn(readCpio([cpio], { body: factsBody }), held, kind, path);
    if (found) return found;
  }
  return undefined;
}

/**
 * The app built into kernel `path` of `kind` (identify's value). Throws a UserError naming the
 * file when it carries no slimroot app.
 */
export async function embeddedApp(path: string, kind: KernelKind, scratch: string): Promise<EmbeddedApp> {
  const found = await findEmbedded(path, kind, scratch);
  if (!found) throw new UserError(noEmbeddedApp(path));
  return { kind, entries: found.entries, heldBytes: found.held };
}

/** The one line for a kernel that carries no app. */
export function noEmbeddedApp(path: string): string {
  return `${path}: a kernel with no slimroot app built in (slimroot kernel build --embed makes one); to boot an image on it: slimroot run IMAGE --kernel ${path}`;
}
