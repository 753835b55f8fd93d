/**
 * An initramfs-list directory (`--format initramfs-list`): DIR/initramfs_list and the bodies
 * DIR/root/N it names. Only DIR/root/N is ever read for a `file` line, whatever its location
 * says: a list names host paths, and this reads none outside the directory.
 */
import { basename, join } from "node:path";
import { APP_CONFIG_PATH, type AppConfig, decodeAppConfig } from "../appconfig/appconfig.js";
import { type ListEntry, parseList } from "../cpio/gen-list.js";
import { LIST_NAME, ROOT_DIR } from "../cpio/list-dir.js";
import { elfArch } from "../elf/elf.js";
import { INIT_PATH } from "../guest/init-binary.js";
import { UserError } from "../util/errors.js";
import { readHead, readInputText, statInput } from "../util/input-file.js";
import type { InitramfsFacts } from "./initramfs.js";

/** The list's entries, each `file` with its body's path (inside DIR/root) and size. */
export async function readListDir(dir: string): Promise<{ entry: ListEntry; body?: string; size: number }[]> {
  const listFile = join(dir, LIST_NAME);
  const text = await readInputText(listFile).catch((err: Error) => {
    throw new UserError(`${dir}: a directory, but no initramfs-list one (${err.message})`);
  });
  // ${VAR} in a location is not expanded: only the body's number is used.
  const out: { entry: ListEntry; body?: string; size: number }[] = [];
  for (const { entry, line } of parseList(text, listFile, new Proxy({}, { get: () => "" }))) {
    if (entry.type !== "file") {
      out.push({ entry, size: 0 });
      continue;
    }
    const n = basename(entry.location);
    if (!/^\d+$/.test(n))
      throw new UserError(`${listFile}:${line}: location ${entry.location} is not a body in ${ROOT_DIR}/`);
    const body = join(dir, ROOT_DIR, n);
    out.push({ entry, body, size: (await statInput(body, body)).size });
  }
  return out;
}

export async function listFacts(dir: string): Promise<InitramfsFacts & { bytes: number; entries: number }> {
  const entries = await readListDir(dir);
  let bytes = (await statInput(join(dir, LIST_NAME), dir)).size;
  let arch: InitramfsFacts["arch"];
  let app: AppConfig | undefined;
  for (const { entry, body, size } of entries) {
    if (entry.type !== "file" || !body) continue;
    bytes += size;
    const names = entry.names.map((n) => n.replace(/^\/+/, ""));
    if (names.includes(INIT_PATH)) arch = elfArch(await readHead(body, 64));
    if (names.includes(APP_CONFIG_PATH)) app = decodeAppConfig(await readInputText(body));
  }
  return {
    bytes,
    entries: entries.length,
    ...(arch ? { arch } : { noArch: `${dir}: no x86-64 or arm64 ELF /init in the list` }),
    ...(app ? { app } : {}),
  };
}
