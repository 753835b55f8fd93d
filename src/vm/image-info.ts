import type { Arch } from "../arch/arch.js";
import { readArchiveFile } from "../inspect/inspect.js";
import { elfArch } from "../kernel/arch.js";
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
  for await (const entry of readArchiveFile(path)) {
    if (entry.name.replace(/^\.?\//, "") !== "init") continue;
    const arch = elfArch(entry.body);
    if (!arch) throw new UserError(`${path}: /init is not an x86-64 or arm64 ELF executable`);
    return { arch };
  }
  throw new UserError(`${path}: no /init in the image: build it with slimroot build`);
}
