import { PassThrough, Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { pipeline } from "node:stream/promises";
import { sniffedDecompressor } from "../compress/compress.js";
import { readInput } from "../util/input-file.js";

/**
 * A module file's plain ELF bytes. Distributions may ship `.ko.xz`, `.ko.zst` or `.ko.gz`
 * (kmod decompresses them in user space); our init hands files straight to finit_module
 * without flags, so they are decompressed here, judged by content rather than name.
 */
export async function readModuleBytes(path: string): Promise<Buffer> {
  const raw = await readInput(path);
  const decoder = sniffedDecompressor(raw.subarray(0, 8), `decompressing ${path}`);
  if (!decoder) return raw;
  const out = new PassThrough();
  const done = buffer(out);
  await pipeline(Readable.from([raw]), decoder, out);
  return done;
}
