import { stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { type ListEntry, parseList } from "../cpio/gen-list.js";
import {
  displayName,
  EscapeError,
  nameBytes,
  nameFromBytes,
  normalizeImagePath,
  parentOf,
} from "../tree/path.js";
import { hostFileContent } from "../tree/spool.js";
import type { Inode, Tree } from "../tree/tree.js";
import { spending } from "../util/budget.js";
import { UserError } from "../util/errors.js";
import { readInputLines } from "../util/input-file.js";
import type { SourceScheme } from "./source.js";

/**
 * A gen_init_cpio file list (src/cpio/gen-list.ts), the hand-made route's format: each line
 * becomes one tree entry. Locations are read as data, relative to the list's directory or
 * absolute; nothing in a list is run. Parents a list does not name are made 0755 root
 * directories (the kernel would fail to create the entry instead). A name listed twice is
 * refused; the list gives no run config (give --entrypoint or a command).
 */
export const list: SourceScheme = {
  scheme: "list",
  usage: "list:FILE",
  open: async (file, text) => {
    // Names are bytes (tree/path.ts): a name that is not UTF-8 keeps its bytes.
    const listText = await readInputLines(file, text);
    const base = dirname(resolve(file));
    const lines = parseList(nameFromBytes(listText), file);
    // Check every location now, so a missing file is named before anything is built.
    const sizes = new Map<number, { path: Buffer; size: number; mtime: number }>();
    for (const { entry, line } of lines) {
      if (entry.type !== "file") continue;
      const path = nameBytes(resolve(base, entry.location));
      const st = await stat(path).catch(() => undefined);
      if (!st?.isFile())
        throw new UserError(`${file}:${line}: ${displayName(entry.location)}: no such regular file`);
      sizes.set(line, { path, size: st.size, mtime: Math.floor(st.mtimeMs / 1000) });
    }
    return {
      ref: text,
      config: {},
      layers: [
        {
          name: text,
          apply: async (tree, { index }) => {
            const listed = new Map<string, number>();
            for (const { entry, line } of lines) {
              const at = `${file}:${line}`;
              const inode = inodeOf(entry, sizes.get(line));
              if (inode.content) spending(at, () => tree.budget.file(inode.content!.size));
              const names = entry.type === "file" ? entry.names : [entry.name];
              for (const name of names) {
                const path = imagePath(name, at);
                spending(at, () => tree.budget.entry(path));
                const first = listed.get(path);
                if (first !== undefined)
                  throw new UserError(
                    `${at}: ${displayName(`/${path}`)} is listed twice (first at line ${first})`,
                  );
                listed.set(path, line);
                place(tree, path, inode, index, at);
              }
            }
          },
        },
      ],
      warnings: [],
    };
  },
};

function imagePath(name: string, at: string): string {
  try {
    return normalizeImagePath(name);
  } catch (err) {
    if (err instanceof EscapeError) throw new UserError(`${at}: ${err.message}`);
    throw err;
  }
}

function inodeOf(e: ListEntry, host?: { path: Buffer; size: number; mtime: number }): Inode {
  const owned = { mode: e.mode, uid: e.uid, gid: e.gid, mtime: 0 };
  switch (e.type) {
    case "file":
      return { kind: "file", ...owned, mtime: host!.mtime, content: hostFileContent(host!.path, host!.size) };
    case "dir":
      return { kind: "dir", ...owned };
    case "slink":
      return { kind: "symlink", ...owned, target: e.target };
    case "nod":
      return { kind: e.dev === "b" ? "block" : "char", ...owned, rdevMajor: e.major, rdevMinor: e.minor };
    case "pipe":
      return { kind: "fifo", ...owned };
    case "sock":
      return { kind: "socket", ...owned };
  }
}

/** Puts one entry in the tree; a directory made earlier as a parent takes the listed attributes. */
function place(tree: Tree, path: string, inode: Inode, layer: number, at: string): void {
  if (path === "") {
    if (inode.kind !== "dir") throw new UserError(`${at}: the root can only be a dir`);
    Object.assign(tree.root.inode, inode);
    return;
  }
  const { node: parent, blocked } = tree.ensureDir(parentOf(path), layer);
  if (!parent) throw new UserError(`${at}: /${path}: /${blocked} is not a directory`);
  const existing = tree.get(path);
  if (existing?.inode.kind === "dir") {
    if (inode.kind !== "dir")
      throw new UserError(`${at}: /${path} is a directory (an earlier line puts files in it)`);
    Object.assign(existing.inode, inode);
    return;
  }
  tree.set(path, { inode, layer, ...(inode.kind === "dir" ? { children: new Map() } : {}) });
}
