import { createWriteStream } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { inputStream } from "../util/input-file.js";

/**
 * Joins initramfs archives into one initrd file, each starting on a 4-byte boundary. The
 * kernel unpacks concatenated archives, each compressed on its own or not at all, and skips
 * zero bytes between them; but it takes an uncompressed archive only at an offset that is a
 * multiple of 4 (init/initramfs.c), and a gzip or xz image rarely ends on one.
 */
export async function joinInitrd(parts: readonly (string | Buffer)[], output: string): Promise<number> {
  let written = 0;
  async function* chunks(): AsyncGenerator<Buffer> {
    for (const part of parts) {
      const src = typeof part === "string" ? await inputStream(part) : Readable.from([part]);
      for await (const chunk of src) {
        written += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
      const pad = (4 - (written % 4)) % 4;
      if (pad) {
        written += pad;
        yield Buffer.alloc(pad);
      }
    }
  }
  await pipeline(Readable.from(chunks()), createWriteStream(output, { mode: 0o600 }));
  return written;
}
