import { createReadStream } from "node:fs";
import type { Readable } from "node:stream";
import type { Arch } from "../build/init-binary.js";
import { decompressor, detectCompression } from "../compress/compress.js";
import { readCpio } from "../cpio/reader.js";
import { elfArch, readHead } from "../kernel/arch.js";
import { UserError } from "../util/errors.js";

export interface ImageInfo {
  /** From the ELF header of the image's /init. */
  arch: Arch;
}

/**
 * Finds the image's /init and reads its architecture. Entries come sorted by name, so the
 * scan stops at "init", long before most of a large image is decompressed.
 */
export async function imageInfo(path: string): Promise<ImageInfo> {
  let head: Buffer;
  try {
    head = await readHead(path, 16);
  } catch (err) {
    throw new UserError(`${path}: cannot read the image (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  const kind = detectCompression(head);
  const file = createReadStream(path);
  const plain: Readable = file.pipe(decompressor(kind, `reading ${path}`));
  file.on("error", (err) => plain.destroy(err));
  try {
    for await (const entry of readCpio(plain)) {
      const name = entry.name.replace(/^\.?\//, "");
      if (name !== "init") continue;
      const arch = elfArch(entry.body);
      if (!arch) throw new UserError(`${path}: /init is not an x86-64 or arm64 ELF executable`);
      return { arch };
    }
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${path}: not a slimroot image (${(err as Error).message})`);
  } finally {
    plain.destroy();
    file.destroy();
  }
  throw new UserError(`${path}: no /init in the image: build it with slimroot build`);
}
