import { createWriteStream } from "node:fs";
import { mkdir, utimes, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { OUTPUT_MARK, outputMark } from "../output/output.js";
import type { Inode, Tree } from "../tree/tree.js";
import { UserError } from "../util/errors.js";
import { encodeListLine, type ListEntry } from "./gen-list.js";

/** The list's name inside the output directory; file bodies go under ROOT_DIR beside it. */
export const LIST_NAME = "initramfs_list";
export const ROOT_DIR = "root";

export interface ListDirOptions {
  /** Every mtime later than this is lowered to it, as in the cpio writer. */
  clampMtime: number;
  /** Said in the list's header comment. */
  source?: string;
}

/**
 * Writes `tree` as a gen_init_cpio list plus the file bodies it names into the new directory
 * `dir`, for a kernel build's CONFIG_INITRAMFS_SOURCE once `dir` is renamed to `target`
 * (src/output/ does that, with the .why): TARGET/initramfs_list and TARGET/root/PATH.
 * Locations are absolute (the kernel build reads them from its own directory). Modes, owners
 * and devices are in the list; the bodies carry the image's mtimes (gen_init_cpio takes a
 * file's mtime from its location). Hard links are one `file` line at the last name, so every
 * parent is listed before it. The directory's mark lists what is in it, so a later build may
 * replace it. Returns the bytes of the list and bodies.
 */
export async function writeListDir(
  tree: Tree,
  dir: string,
  target: string,
  o: ListDirOptions,
): Promise<number> {
  const bodies = join(target, ROOT_DIR);
  word(bodies, target);
  await mkdir(dir);
  const names = new Map<Inode, string[]>();
  for (const { path, inode } of tree.walk()) names.set(inode, [...(names.get(inode) ?? []), path]);
  const lines = [`# gen_init_cpio list written by slimroot${o.source ? ` from ${o.source}` : ""}`];
  let bytes = 0;
  const seen = new Map<Inode, number>();
  await mkdir(join(dir, ROOT_DIR));
  for (const { path, inode } of tree.walk()) {
    if (path === "") continue;
    const all = names.get(inode)!;
    const nth = (seen.get(inode) ?? 0) + 1;
    seen.set(inode, nth);
    if (inode.kind === "file" && nth < all.length) continue;
    const entry = listEntry(path, inode, all, bodies);
    lines.push(encodeListLine(entry));
    if (entry.type === "file") {
      const file = join(dir, ROOT_DIR, path);
      await mkdir(dirname(file), { recursive: true });
      if (inode.content)
        await pipeline(inode.content.open(), createWriteStream(file, { flags: "wx", mode: 0o644 }));
      else await writeFile(file, "", { flag: "wx", mode: 0o644 });
      const mtime = Math.max(0, Math.min(inode.mtime, o.clampMtime));
      await utimes(file, mtime, mtime);
      bytes += inode.content?.size ?? 0;
    }
  }
  const text = `${lines.join("\n")}\n`;
  await writeFile(join(dir, LIST_NAME), text, { flag: "wx", mode: 0o644 });
  await writeFile(join(dir, OUTPUT_MARK), outputMark([LIST_NAME, ROOT_DIR]), { flag: "wx", mode: 0o644 });
  return bytes + Buffer.byteLength(text);
}

function listEntry(path: string, inode: Inode, names: string[], bodies: string): ListEntry {
  const owned = { mode: inode.mode & 0o7777, uid: inode.uid, gid: inode.gid };
  const name = `/${path}`;
  switch (inode.kind) {
    case "file":
      return { type: "file", names: names.map((n) => `/${n}`), location: join(bodies, path), ...owned };
    case "dir":
      return { type: "dir", name, ...owned };
    case "symlink":
      // Linux symlinks are always 0777 (as the cpio writer says too).
      return { type: "slink", name, target: inode.target ?? "", ...owned, mode: 0o777 };
    case "char":
    case "block":
      return {
        type: "nod",
        name,
        dev: inode.kind === "block" ? "b" : "c",
        major: inode.rdevMajor ?? 0,
        minor: inode.rdevMinor ?? 0,
        ...owned,
      };
    case "fifo":
      return { type: "pipe", name, ...owned };
    case "socket":
      return { type: "sock", name, ...owned };
  }
}

function word(path: string, output: string): void {
  if (/\s/.test(path))
    throw new UserError(`${output}: a gen_init_cpio list cannot name files under a path with whitespace`);
}
