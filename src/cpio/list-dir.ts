import { createWriteStream } from "node:fs";
import { mkdir, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { OUTPUT_MARK, outputMark } from "../output/output.js";
import type { Inode, Tree } from "../tree/tree.js";
import { printable, UserError } from "../util/errors.js";
import { encodeListLine, LIST_FORBIDDEN, type ListEntry } from "./gen-list.js";

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
 * (src/output/ does that, with the .why): TARGET/initramfs_list and TARGET/root/N, one body
 * per file inode, numbered in list order. A location never holds an image name: gen_init_cpio
 * expands `${VAR}` in locations (a name with `${Q}` would read another host file into the
 * archive) and reads at most PATH_MAX of one, so names stay in name fields, byte for byte.
 * Locations are absolute (the kernel build reads them from its own directory). Modes, owners
 * and devices are in the list; the bodies carry the image's mtimes (gen_init_cpio takes a
 * file's mtime from its location). Hard links are one `file` line at the last name, so every
 * parent is listed before it. Every line is encoded before any body is written, so a tree the
 * format cannot hold fails at once. The directory's mark lists what is in it, so a later build
 * may replace it. Returns the bytes of the list and bodies.
 */
export async function writeListDir(
  tree: Tree,
  dir: string,
  target: string,
  o: ListDirOptions,
): Promise<number> {
  const bodies = join(target, ROOT_DIR);
  if (LIST_FORBIDDEN.pattern.test(bodies) || bodies.includes("${"))
    throw new UserError(
      `${target}: a gen_init_cpio list cannot name files under a path with whitespace or \${`,
    );
  const names = new Map<Inode, string[]>();
  for (const { path, inode } of tree.walk()) names.set(inode, [...(names.get(inode) ?? []), path]);
  const header = `# gen_init_cpio list written by slimroot${o.source ? ` from ${printable(o.source)}` : ""}`;
  const lines: Buffer[] = [Buffer.from(header)];
  const files: { body: string; inode: Inode }[] = [];
  const seen = new Map<Inode, number>();
  for (const { path, inode } of tree.walk()) {
    if (path === "") continue;
    const all = names.get(inode)!;
    const nth = (seen.get(inode) ?? 0) + 1;
    seen.set(inode, nth);
    if (inode.kind === "file" && nth < all.length) continue;
    const body = String(files.length + 1);
    const entry = listEntry(path, inode, all, join(bodies, body));
    lines.push(encodeListLine(entry));
    if (entry.type === "file") files.push({ body, inode });
  }
  await mkdir(join(dir, ROOT_DIR), { recursive: true });
  let bytes = 0;
  for (const { body, inode } of files) {
    const file = join(dir, ROOT_DIR, body);
    if (inode.content)
      await pipeline(inode.content.open(), createWriteStream(file, { flags: "wx", mode: 0o644 }));
    else await writeFile(file, "", { flag: "wx", mode: 0o644 });
    const mtime = Math.max(0, Math.min(inode.mtime, o.clampMtime));
    await utimes(file, mtime, mtime);
    bytes += inode.content?.size ?? 0;
  }
  const text = Buffer.concat(lines.flatMap((l) => [l, Buffer.from("\n")]));
  await writeFile(join(dir, LIST_NAME), text, { flag: "wx", mode: 0o644 });
  await writeFile(join(dir, OUTPUT_MARK), outputMark([LIST_NAME, ROOT_DIR]), { flag: "wx", mode: 0o644 });
  return bytes + text.length;
}

function listEntry(path: string, inode: Inode, names: string[], location: string): ListEntry {
  const owned = { mode: inode.mode & 0o7777, uid: inode.uid, gid: inode.gid };
  const name = `/${path}`;
  switch (inode.kind) {
    case "file":
      return { type: "file", names: names.map((n) => `/${n}`), location, ...owned };
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
