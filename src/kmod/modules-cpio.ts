import { stat } from "node:fs/promises";
import { type Compression, compressor } from "../compress/compress.js";
import { S_IFREG } from "../cpio/newc.js";
import { type CpioRecord, directoryChain, writeRecords } from "../cpio/writer.js";
import { SLIMROOT_DIR } from "../guest/layout.js";
import { writeFileAtomically } from "../output/atomic.js";
import { hostFileContent } from "../tree/spool.js";
import { compareNames } from "../tree/tree.js";

/**
 * Where the modules archive puts its `.ko` files in the guest; run.conf's `modules` record
 * points the init there. Not /lib/modules/slimroot: the kernel's cpio unpacker replaces an
 * existing path whose type differs from the archive's entry (init/initramfs.c clean_path),
 * so a `lib` directory entry deletes the `/lib -> usr/lib` symlink of a merged-/usr image
 * (Debian, Ubuntu, Fedora) and with it the dynamic loader. /etc/slimroot is always a real
 * directory: `slimroot build` writes app.conf there.
 */
export const GUEST_MODULES_DIR = `${SLIMROOT_DIR}/modules`;

export interface ModuleFile {
  /** The module's name; the file is stored as NAME.ko. */
  name: string;
  /** A plain (uncompressed) .ko on the host. */
  path: string;
}

/**
 * Writes a newc archive holding `modules` flat under /etc/slimroot/modules, to be appended
 * to an image as a second initramfs. The init orders loads by .modinfo itself, so names need
 * no numbering. Entries are root-owned, mode 0644, mtime 0: the same modules give the same
 * bytes.
 */
export async function writeModulesCpio(
  modules: readonly ModuleFile[],
  output: string,
  compression: Compression = "none",
): Promise<number> {
  const records: CpioRecord[] = directoryChain(GUEST_MODULES_DIR);
  // Sorted as a tree walk would list them, so the same modules give the same bytes.
  const byName = new Map(modules.map((m) => [`${m.name}.ko`, m.path]));
  const sorted = [...byName].sort(([a], [b]) => compareNames(a, b));
  for (const [name, path] of sorted) {
    const body = hostFileContent(path, (await stat(path)).size);
    records.push({
      name: `${GUEST_MODULES_DIR}/${name}`,
      mode: S_IFREG | 0o644,
      uid: 0,
      gid: 0,
      mtime: 0,
      body,
    });
  }
  return writeFileAtomically(output, writeRecords(records), [compressor(compression)]);
}
