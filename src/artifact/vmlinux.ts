/**
 * The ELF vmlinux inside an x86 bzImage, for VMMs that boot only ELF kernels (Firecracker on
 * x86_64 before its 2026 releases). What the kernel's scripts/extract-vmlinux does, but
 * exact: the boot protocol header (2.08+, every kernel since 2.6.30) says where the
 * compressed payload starts and how long it is, and the payload's first bytes say how it
 * is compressed. Decompression goes through Node's zlib or Debian's tools.
 */
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { type Compression, decompressor } from "../compress/compress.js";
import { detectCompression } from "../compress/magic.js";
import { elfArch } from "../elf/elf.js";
import { type FileWriter, writeFilesAtomically } from "../output/atomic.js";
import { EnvironmentError, UserError } from "../util/errors.js";
import { readHead } from "../util/input-file.js";
import { toolFilter } from "../util/tool-filter.js";

/** Compressions Kbuild can wrap vmlinux in (CONFIG_KERNEL_*). */
export type KernelCompression = Exclude<Compression, "none"> | "lzma" | "bzip2" | "lzo" | "elf";

export interface BzImagePayload {
  /** Offset of the compressed vmlinux in the file. */
  offset: number;
  /** Its length, without the 4-byte size Kbuild appends (gzip has its own, kept). */
  length: number;
  compression: KernelCompression;
  /** The uncompressed size (modulo 2^32) recorded with it; none for an uncompressed ELF. */
  size?: number;
}

/** The magic numbers of the compressions detectCompression does not know (lib/decompress.c). */
const OTHER_MAGICS: readonly [Buffer, KernelCompression][] = [
  [Buffer.from([0x5d, 0x00, 0x00]), "lzma"],
  [Buffer.from("BZh"), "bzip2"],
  [Buffer.from([0x89, 0x4c, 0x5a, 0x4f]), "lzo"],
  [Buffer.from([0x7f, 0x45, 0x4c, 0x46]), "elf"],
];

function compressionOf(head: Buffer): KernelCompression | undefined {
  const c = detectCompression(head);
  if (c !== "none") return c;
  return OTHER_MAGICS.find(([magic]) => head.subarray(0, magic.length).equals(magic))?.[1];
}

/** Where the compressed vmlinux is in `image` (the whole bzImage). */
export function bzImagePayload(image: Buffer, label: string): BzImagePayload {
  if (image.length < 0x250 || image.toString("latin1", 0x202, 0x206) !== "HdrS")
    throw new UserError(`${label}: not a bzImage (no HdrS boot header)`);
  const version = image.readUInt16LE(0x206);
  if (version < 0x208)
    throw new UserError(
      `${label}: boot protocol ${version >> 8}.${version & 0xff} has no payload fields (2.08+ needed)`,
    );
  const setupSects = image[0x1f1] || 4;
  const offset = (setupSects + 1) * 512 + image.readUInt32LE(0x248);
  const total = image.readUInt32LE(0x24c);
  if (offset + total > image.length || total < 8)
    throw new UserError(`${label}: the payload fields point outside the file`);
  const compression = compressionOf(image.subarray(offset, offset + 8));
  if (!compression)
    throw new UserError(
      `${label}: unknown payload compression (first bytes ${image.subarray(offset, offset + 4).toString("hex")})`,
    );
  if (compression === "elf") return { offset, length: total, compression };
  // gzip ends with the uncompressed size (ISIZE); Kbuild appends it, little-endian, to every
  // other format. Checked after decompression: Node's gunzip ends a truncated stream quietly.
  const size = image.readUInt32LE(offset + total - 4);
  if (compression === "gzip") return { offset, length: total, compression, size };
  return { offset, length: total - 4, compression, size };
}

function payloadDecompressor(c: KernelCompression, what: string) {
  switch (c) {
    case "lzma":
      return toolFilter("xz", ["--format=lzma", "-d", "-c"], what);
    case "bzip2":
      return toolFilter("bzip2", ["-d", "-c"], what);
    case "lzo":
      return toolFilter("lzop", ["-d", "-c"], what);
    case "elf":
      return decompressor("none", what);
    default:
      return decompressor(c, what);
  }
}

/**
 * Writes the vmlinux inside the bzImage `image` (already read) to `output`, atomically, and
 * checks it is an x86-64 ELF of the size Kbuild recorded. Returns the payload's description.
 */
export async function extractVmlinux(
  image: Buffer,
  label: string,
  output: string,
  write: FileWriter = writeFilesAtomically,
): Promise<BzImagePayload> {
  const p = bzImagePayload(image, label);
  const what = `${label}: ${p.compression} payload`;
  try {
    await write(
      [
        {
          target: output,
          source: Readable.from([image.subarray(p.offset, p.offset + p.length)]),
          transforms: [payloadDecompressor(p.compression, what)],
        },
      ],
      async (tmps) => {
        const tmp = tmps[0]!;
        const arch = elfArch(await readHead(tmp, 64));
        if (arch !== "amd64") throw new UserError(`${what}: does not decompress to an x86-64 ELF vmlinux`);
        const { size } = await stat(tmp);
        if (p.size !== undefined && size !== p.size)
          throw new UserError(`${what}: decompressed to ${size} bytes, the image says ${p.size}`);
      },
    );
  } catch (err) {
    if (err instanceof UserError || err instanceof EnvironmentError) throw err;
    throw new UserError(`${what}: ${(err as Error).message}`);
  }
  return p;
}
