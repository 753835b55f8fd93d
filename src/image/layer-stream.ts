import type { Readable } from "node:stream";
import { PassThrough, pipeline } from "node:stream";
import { sniffedDecompressor } from "../compress/compress.js";
import { UserError } from "../util/errors.js";

/**
 * Turns a possibly compressed layer stream (gzip, zstd, xz or plain tar) into a plain tar stream,
 * by sniffing the magic bytes. Errors name the layer.
 */
export function decompressLayer(input: Readable, name: string): Readable {
  // Room for a few decompressed chunks, so the decompressor works on while the tar is read.
  // Chunks are handed on one by one (object mode on the reading side): a byte-mode stream's
  // async iterator joins everything buffered into one new buffer, a copy of the whole layer.
  const out = new PassThrough({ readableObjectMode: true, readableHighWaterMark: 4 });
  let sniffed = false;
  const onFirst = (chunk: Buffer) => {
    sniffed = true;
    input.pause();
    input.off("data", onFirst);
    input.unshift(chunk);
    // Layers come gzip, zstd or xz compressed, or plain; lz4 is not a layer compression.
    const decoder = sniffedDecompressor(chunk, `layer ${name}`, ["gzip", "zstd", "xz"]);
    const fail = (err: Error | null) => {
      if (err) out.destroy(err instanceof UserError ? err : new UserError(`layer ${name}: ${describe(err)}`));
    };
    // Compressed bytes read ahead too (up to 1 MiB): fed one chunk at a time, the decompressor
    // sat idle after each until the main thread, busy with the tar, read and hashed the next.
    if (decoder) pipeline(input, new PassThrough({ highWaterMark: 1024 * 1024 }), decoder, out, fail);
    else pipeline(input, out, fail);
  };
  input.on("data", onFirst);
  input.once("end", () => {
    if (!sniffed) out.end();
  });
  input.once("error", (err) => {
    if (!sniffed)
      out.destroy(err instanceof UserError ? err : new UserError(`layer ${name}: ${describe(err)}`));
  });
  return out;
}

function describe(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "Z_BUF_ERROR" || err.message === "unexpected end of file") return "truncated compressed data";
  if (code === "Z_DATA_ERROR") return `corrupt gzip data (${err.message})`;
  return err.message;
}
