/**
 * Reading a built initramfs (a cpio archive, possibly compressed) without unpacking it: its
 * compression from the first bytes, its entries as a stream, its /init's architecture.
 */
import { pipeline } from "node:stream";
import type { Arch } from "../arch/arch.js";
import { type Compression, decompressor, detectCompression } from "../compress/compress.js";
import { type CpioEntry, readCpio } from "../cpio/reader.js";
import { elfArch } from "../elf/elf.js";
import { EnvironmentError, UserError } from "../util/errors.js";
import { inputStream, readHead } from "../util/input-file.js";

/** The compression of a file, from its first bytes. */
export async function sniffCompression(file: string): Promise<Compression> {
  return detectCompression(await readHead(file, 8));
}

/** Opens a (possibly compressed) cpio file as a stream of entries. */
export async function* readArchiveFile(file: string): AsyncGenerator<CpioEntry> {
  const kind = await sniffCompression(file);
  const raw = await inputStream(file);
  const plain = decompressor(kind, file);
  pipeline(raw, plain, () => undefined);
  try {
    yield* readCpio(plain);
  } catch (err) {
    // A missing decompressor is the machine's problem (exit 2) and already names the file.
    if (err instanceof EnvironmentError) throw err;
    throw new UserError(`${file}: ${(err as Error).message}`);
  } finally {
    // A reader that stops early (image-info stops at /init) must not leave a decompressor running.
    plain.destroy();
    raw.destroy();
  }
}

export interface ImageInfo {
  /** From the ELF header of the image's /init. */
  arch: Arch;
}

/**
 * Finds the image's /init and reads its architecture. Entries come sorted by name, so the
 * scan stops at "init", long before most of a large image is decompressed.
 */
export async function imageInfo(path: string): Promise<ImageInfo> {
  for await (const entry of readArchiveFile(path)) {
    if (entry.name.replace(/^\.?\//, "") !== "init") continue;
    const arch = elfArch(entry.body);
    if (!arch) throw new UserError(`${path}: /init is not an x86-64 or arm64 ELF executable`);
    return { arch };
  }
  throw new UserError(`${path}: no /init in the image: build it with slimroot build`);
}
