import { execFile } from "node:child_process";
import { type Duplex, PassThrough } from "node:stream";
import { promisify } from "node:util";
import { createGunzip } from "node:zlib";
import type { Arch } from "../arch/arch.js";
import { toolFilter } from "../util/tool-filter.js";
import { GZIP_BLOCK, parallelGzip } from "./gzip.js";
import { type Compressed, detectCompression } from "./magic.js";

export type Compression = Compressed | "none";
export const COMPRESSIONS: readonly Compression[] = ["gzip", "zstd", "xz", "lz4", "none"];

/** The host tool that (de)compresses `kind`: gzip is zlib inside Node, none needs nothing. */
export function compressionTools(kind: Compression): string[] {
  return kind === "gzip" || kind === "none" ? [] : [kind];
}

/**
 * xz's branch-converting filter for each architecture's code, where the kernels slimroot
 * boots have its decoder: Debian's amd64 6.1 kernel and slimroot's own have XZ_DEC_X86;
 * Linux 6.1 has no ARM64 BCJ decoder at all, so arm64 images get none. It makes the traced
 * nginx image about 5% smaller.
 */
export const XZ_BCJ: Readonly<Record<Arch, string | undefined>> = { amd64: "x86", arm64: undefined };

/**
 * xz's dictionary: the kernel's initramfs decoder allocates what the stream asks for
 * (XZ_DYNALLOC), so a larger one than Kbuild's 1 MiB is fine and finds more repeats.
 */
export const XZ_DICT = "8MiB";

/** The xz command-line options slimroot compresses an image for `arch` with. */
export function xzOptions(arch?: Arch): string[] {
  const bcj = arch ? XZ_BCJ[arch] : undefined;
  return ["--check=crc32", ...(bcj ? [`--${bcj}`] : []), `--lzma2=preset=9e,dict=${XZ_DICT}`];
}

/**
 * A stream that compresses into exactly the form the kernel's initramfs unpacker takes
 * (lib/decompress_*.c): xz with CRC32 checks only (and the BCJ filter of the image's
 * architecture, which the xz stream header and compressorVersion record), lz4 in the legacy
 * frame, zstd with a window of at most 8 MiB (the kernel allocates all of it).
 * Single-threaded xz and zstd's fixed job layout keep the bytes the same from run to run.
 */
export function compressor(kind: Compression, arch?: Arch): Duplex {
  switch (kind) {
    case "gzip":
      return parallelGzip({ level: GZIP_LEVEL });
    case "none":
      return new PassThrough();
    default:
      return toolFilter(kind, toolArgs(kind, arch), `${kind} compression`);
  }
}

const GZIP_LEVEL = 6;

/** The Debian tools' arguments (the tool is named as the compression). */
function toolArgs(kind: Exclude<Compression, "gzip" | "none">, arch?: Arch): string[] {
  switch (kind) {
    case "zstd":
      return ["-19", "--zstd=wlog=23", "-T0", "-q", "-c"];
    case "xz":
      return ["-T1", ...xzOptions(arch), "-c"];
    case "lz4":
      return ["-l", "-9", "-q", "-c"];
  }
}

/**
 * What makes the compressed bytes, and which build of it: the same cpio through the same
 * compressor build gives the same file; another zlib (Node release) or tool version may not.
 */
export async function compressorVersion(kind: Compression, arch?: Arch): Promise<string> {
  if (kind === "none") return "none";
  if (kind === "gzip")
    return `gzip level ${GZIP_LEVEL} (slimroot's parallel deflate, ${GZIP_BLOCK / 1024} KiB blocks) with zlib ${process.versions.zlib} (Node ${process.version})`;
  const { stdout } = await promisify(execFile)(kind, ["--version"]).catch(() => ({ stdout: "" }));
  const version = stdout
    .trim()
    .split("\n")
    .map((l) => l.replace(/^\*+\s*|\s*\*+$/g, "").trim());
  return `${kind} ${toolArgs(kind, arch).join(" ")} (${version.join("; ") || "version unknown"})`;
}

/**
 * The stream that undoes what `head` (a stream's first bytes) says it is compressed with, when
 * it is one of `kinds`; undefined for plain bytes. For readers of a compressed input that
 * is not an image (a layer, a module): what an image file is, is artifact/'s question.
 */
export function sniffedDecompressor(
  head: Buffer,
  what: string,
  kinds: readonly Compression[] = COMPRESSIONS,
): Duplex | undefined {
  const kind = detectCompression(head);
  return kind === "none" || !kinds.includes(kind) ? undefined : decompressor(kind, what);
}

/** A stream that undoes `kind`. */
export function decompressor(kind: Compression, what: string): Duplex {
  switch (kind) {
    case "gzip":
      // Output in 1 MiB pieces: zlib's 16 KiB default made a layer's inflate thousands of
      // thread-pool round trips, each waiting for the main thread (busy with the tar) to ask
      // for the next; 256 KiB still left the 186 MB nginx layer's inflate 80 ms slower.
      return createGunzip({ chunkSize: 1024 * 1024 });
    case "zstd":
      return toolFilter("zstd", ["-d", "-q", "-c"], what);
    case "xz":
      return toolFilter("xz", ["-d", "-c", "-q"], what);
    case "lz4":
      return toolFilter("lz4", ["-d", "-q", "-c"], what);
    case "none":
      return new PassThrough();
  }
}

/** The conventional file name suffix, used to pick a default from `-o`. */
export function compressionForFileName(name: string): Compression | undefined {
  if (/\.(gz|tgz)$/.test(name)) return "gzip";
  if (/\.zst$/.test(name)) return "zstd";
  if (/\.xz$/.test(name)) return "xz";
  if (/\.lz4$/.test(name)) return "lz4";
  if (/\.cpio$/.test(name)) return "none";
  return undefined;
}
