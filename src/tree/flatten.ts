import type { Readable } from "node:stream";
import { readTar, type TarEntry, tarErrorText } from "../tar/reader.js";
import { LimitError } from "../util/budget.js";
import { EnvironmentError, UserError } from "../util/errors.js";
import {
  baseOf,
  displayName,
  EscapeError,
  nameBytes,
  nameFromBytes,
  normalizeImagePath,
  parentOf,
} from "./path.js";
import type { Spool } from "./spool.js";
import { dirInode, type Inode, keepDirBelow, type Tree, withLower } from "./tree.js";

const WHITEOUT_PREFIX = ".wh.";
const WHITEOUT_META_PREFIX = ".wh..wh.";
const OPAQUE_MARKER = ".wh..wh..opq";

/**
 * Applies one layer (an uncompressed tar stream) to `tree` the way a container runtime
 * unpacks it: whiteouts and opaque directories hide lower layers, a later entry replaces
 * an earlier one (a directory replaced by a file drops its subtree; a directory over a
 * directory keeps its children), hard links share an inode. Bodies go to `spool`.
 * Anything that would land outside the root or be written through a symlink is refused, and
 * every entry is counted against the tree's budget before its body is spooled.
 */
export async function applyLayer(
  tree: Tree,
  tar: Readable,
  layerIndex: number,
  layerName: string,
  spool: Spool,
): Promise<void> {
  let current = "";
  const fail = (msg: string) => new UserError(`layer ${layerName}: ${msg}`);
  try {
    for await (const entry of readTar(tar)) {
      current = displayName(entry.name);
      await applyEntry(tree, entry, layerIndex, spool);
    }
    // The spool writes behind: a write that failed is this layer's failure.
    current = "";
    await spool.settle();
  } catch (err) {
    tar.destroy();
    if (err instanceof LimitError) throw fail(`entry ${shortName(current)}: ${err.message}`);
    if (err instanceof EnvironmentError)
      throw new EnvironmentError(`layer ${layerName}: entry ${shortName(current)}: ${err.message}`);
    if (err instanceof UserError) throw err;
    const text = tarErrorText(err, current);
    if (text !== undefined) throw fail(text);
    if (err instanceof EscapeError || err instanceof EntryError)
      throw fail(`entry ${current}: ${err.message}`);
    throw fail(err instanceof Error ? err.message : String(err));
  }
}

/** A name for a message: a path thousands of directories deep is cut to its start and end. */
function shortName(name: string): string {
  return name.length <= 200 ? name : `${name.slice(0, 80)}...${name.slice(-80)} (${name.length} characters)`;
}

class EntryError extends Error {}

/**
 * A whiteout name that means nothing or climbs: ".wh." with nothing, "." or ".." after it, and
 * the ".wh..wh." metadata names other than the opaque marker (AUFS internals such as
 * ".wh..wh.plnk" that an image must not carry). A runtime that joined ".wh.." naively would
 * delete the directory holding it (".wh..." its parent): refused, never guessed at.
 */
function checkWhiteout(base: string): void {
  const target = base.slice(WHITEOUT_PREFIX.length);
  if (base === OPAQUE_MARKER) return;
  if (target === "" || target === "." || target === ".." || base.startsWith(WHITEOUT_META_PREFIX)) {
    throw new EntryError(`malformed whiteout ${JSON.stringify(base)}`);
  }
}

async function applyEntry(tree: Tree, header: TarEntry, layer: number, spool: Spool): Promise<void> {
  const path = normalizeImagePath(header.name);
  tree.budget.entry(path);
  const kind = header.kind;
  const base = flatCopy(baseOf(path));
  const dir = parentOf(path);

  if (base.startsWith(WHITEOUT_PREFIX)) {
    checkWhiteout(base);
    const parent = reachableDir(tree, dir, layer);
    if (base === OPAQUE_MARKER) {
      // Hide what lower layers put in the directory; keep what this layer already wrote.
      for (const [name, child] of parent.children!) if (child.layer < layer) parent.children!.delete(name);
    } else {
      parent.children!.delete(base.slice(WHITEOUT_PREFIX.length));
    }
    return;
  }

  const parent = path === "" ? undefined : reachableDir(tree, dir, layer);
  const existing = path === "" ? tree.root : parent!.children!.get(base);
  const meta = { mode: header.mode & 0o7777, uid: header.uid, gid: header.gid, mtime: header.mtime };

  if (kind === "link") {
    const target = normalizeImagePath(header.linkname);
    const targetNode = tree.get(target);
    if (!targetNode || target === "")
      throw new EntryError(`hard link target ${header.linkname} is not in the image`);
    if (targetNode.inode.kind === "dir") throw new EntryError(`hard link to directory ${header.linkname}`);
    if (target === path) return;
    parent!.children!.set(base, withLower({ inode: targetNode.inode, layer }, existing));
    return;
  }

  if (kind === "dir") {
    if (existing?.inode.kind === "dir") {
      // A directory over a directory updates its metadata and keeps its children; the lower
      // layer's metadata stays below it (its own layer's archive part writes that).
      keepDirBelow(existing, layer);
      Object.assign(existing.inode, meta);
      if (header.xattrs) existing.inode.xattrs = header.xattrs;
      else delete existing.inode.xattrs;
      return;
    }
    const node = { inode: dirInode(meta.mode, meta.uid, meta.gid, meta.mtime), children: new Map(), layer };
    if (header.xattrs) node.inode.xattrs = header.xattrs;
    if (path === "") tree.set("", node);
    else parent!.children!.set(base, node);
    return;
  }

  if (path === "") throw new EntryError("the image root must be a directory");
  // Each inode is one object literal with all its fields: fields added later (or spread in)
  // go to a separate property array, which costs a layer of a million files 64 MB.
  const { mode, uid, gid, mtime } = meta;
  let inode: Inode;
  if (kind === "file") {
    // Before a byte of the body is read: a 5 KiB tar may declare a 1 TiB sparse file.
    tree.budget.file(header.size);
    spool.reserve(header.size);
    const content = await spool.append(header.body);
    if (content.size !== header.size) throw new EntryError("body shorter than its header says");
    inode = { kind, mode, uid, gid, mtime, content };
  } else if (kind === "symlink") {
    inode = { kind, mode, uid, gid, mtime, target: header.linkname };
  } else if (kind === "char" || kind === "block") {
    inode = { kind, mode, uid, gid, mtime, rdevMajor: header.devmajor, rdevMinor: header.devminor };
  } else inode = { kind, mode, uid, gid, mtime };
  if (header.xattrs) inode.xattrs = header.xattrs;
  parent!.children!.set(base, withLower({ inode, layer }, existing));
}

/**
 * The directory that will hold a new entry, creating missing parents. A parent that is a
 * symlink would make the runtime write wherever the link points: refused.
 */
function reachableDir(tree: Tree, dir: string, layer: number) {
  const { node, blocked } = tree.ensureDir(dir, layer);
  if (blocked !== undefined) {
    const what = tree.get(blocked)!.inode;
    if (what.kind === "symlink") {
      throw new EntryError(`written through symlink ${blocked} -> ${what.target}`);
    }
    throw new EntryError(`parent ${blocked} is not a directory`);
  }
  return node!;
}

/**
 * A name kept as a directory key, copied out of the path it was cut from: V8 keeps a slice of
 * 13 or more characters as a view that holds the whole path string alive.
 */
function flatCopy(name: string): string {
  return name.length < 13 ? name : nameFromBytes(nameBytes(name));
}
