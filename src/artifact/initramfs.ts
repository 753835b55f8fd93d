/**
 * Reading a built initramfs (a cpio archive, possibly compressed) without unpacking it: its
 * compression from the first bytes, its entries as a stream, its /init's architecture and its
 * app config.
 */
import { pipeline } from "node:stream";
import { APP_CONFIG_PATH, type AppConfig, decodeAppConfig } from "../appconfig/appconfig.js";
import type { Arch } from "../arch/arch.js";
import { type Compression, decompressor } from "../compress/compress.js";
import { detectCompression } from "../compress/magic.js";
import { type CpioEntry, type ReadCpioOptions, readCpio } from "../cpio/reader.js";
import { elfArch } from "../elf/elf.js";
import { INIT_PATH } from "../guest/init-binary.js";
import { EnvironmentError, UserError } from "../util/errors.js";
import { inputStream, readHead } from "../util/input-file.js";

/**
 * Opens a (possibly compressed) cpio file as a stream of entries (`compression`: when known;
 * `o.body`: whose bodies to read, as readCpio's).
 */
export async function* readArchiveFile(
  file: string,
  compression?: Compression,
  o: ReadCpioOptions = {},
): AsyncGenerator<CpioEntry> {
  const kind = compression ?? detectCompression(await readHead(file, 8));
  const raw = await inputStream(file);
  const plain = decompressor(kind, file);
  pipeline(raw, plain, () => undefined);
  try {
    yield* readCpio(plain, o);
  } catch (err) {
    // A missing decompressor is the machine's problem (exit 2) and already names the file.
    if (err instanceof EnvironmentError) throw err;
    throw new UserError(`${file}: ${(err as Error).message}`);
  } finally {
    // A reader that stops early (initramfsFacts stops at /init) must not leave a decompressor running.
    plain.destroy();
    raw.destroy();
  }
}

/** What an initramfs says about its app: /init's architecture and /etc/slimroot/app.conf. */
export interface InitramfsFacts {
  /** From the ELF header of the image's /init; undefined with `noArch` saying why. */
  arch?: Arch;
  noArch?: string;
  app?: AppConfig;
}

/** The entries whose bodies initramfsFacts reads (readCpio's `body` option): the others' headers do. */
export function factsBody(name: string): boolean {
  const n = name.replace(/^\.?\//, "");
  return n === APP_CONFIG_PATH || n === INIT_PATH;
}

/**
 * Reads /init's architecture and the app config from cpio entries. Entries come sorted by
 * name ("etc/slimroot/app.conf" before "init"), so the scan stops at "init", long before most
 * of a large image is decompressed.
 */
export async function initramfsFacts(
  entries: AsyncIterable<CpioEntry> | Iterable<CpioEntry>,
  what: string,
): Promise<InitramfsFacts> {
  let app: AppConfig | undefined;
  for await (const entry of entries) {
    const name = entry.name.replace(/^\.?\//, "");
    if (name === APP_CONFIG_PATH) app = decodeAppConfig(entry.body.toString());
    if (name !== INIT_PATH) continue;
    const arch = elfArch(entry.body);
    return arch
      ? { arch, ...(app ? { app } : {}) }
      : { noArch: `${what}: /init is not an x86-64 or arm64 ELF executable`, ...(app ? { app } : {}) };
  }
  return { noArch: `${what}: no /init in the image: build it with slimroot build`, ...(app ? { app } : {}) };
}
