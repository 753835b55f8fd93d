/**
 * The compressions' magic bytes: "what is this file?" belongs to artifact/ (identify), so only
 * artifact/ and compress/ import this module (a rule of .dependency-cruiser.cjs); a reader of
 * a compressed input that is not an image takes compress.ts's sniffedDecompressor.
 */
/** The compressions a stream's first bytes tell (compress.ts's Compression, but "none"). */
export type Compressed = "gzip" | "zstd" | "xz" | "lz4";

/** Each format's magic bytes at the start of a stream (lz4: the kernel's legacy frame). */
export const MAGIC: Readonly<Record<Compressed, Buffer>> = {
  gzip: Buffer.from([0x1f, 0x8b]),
  zstd: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]),
  xz: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]),
  lz4: Buffer.from([0x02, 0x21, 0x4c, 0x18]),
};

/** The compression a file uses, from its first bytes; "none" for anything unknown. */
export function detectCompression(head: Buffer): Compressed | "none" {
  for (const [kind, magic] of Object.entries(MAGIC))
    if (head.length >= magic.length && head.subarray(0, magic.length).equals(magic))
      return kind as Compressed;
  return "none";
}
