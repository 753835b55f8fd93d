import { Budget } from "../util/budget.js";
import { baseOf, joinImagePath, nameBytes, parentOf } from "./path.js";
import type { Content } from "./spool.js";

export type EntryKind = "file" | "dir" | "symlink" | "char" | "block" | "fifo" | "socket";

/**
 * What a path points at. Hard links are several paths sharing one Inode object, as on disk;
 * replacing one path never changes the others.
 */
export interface Inode {
  kind: EntryKind;
  /** Permission bits including setuid, setgid and sticky (mask 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Regular files only. */
  content?: Content;
  /** Symlinks only: the target exactly as given, never resolved on the host. */
  target?: string;
  /** Extended attributes (e.g. security.capability), when the source had any. */
  xattrs?: Map<string, Buffer>;
  /** Device nodes only. */
  rdevMajor?: number;
  rdevMinor?: number;
}

/** A name in a directory. */
export interface Node {
  inode: Inode;
  /** Directories only. Kept unsorted; walk() sorts. */
  children?: Map<string, Node>;
  /** Index of the layer that last wrote this name (opaque dirs hide lower layers only). */
  layer: number;
  /**
   * What a lower layer had at this name before `layer` replaced it: a file or symlink under a
   * file or symlink, or a directory's metadata under its update. An initramfs written per layer
   * (cpio/parts.ts) writes each layer's own version, so a lower part's bytes do not depend on
   * the layers above it.
   */
  lower?: Node;
}

/**
 * `node`, keeping the lower layer's file or symlink it replaces as its `lower` (see Node). A
 * directory replaced, or replacing, is not kept: the kernel cannot put a file over a directory
 * that still holds entries, so a lower part never writes what an upper part would have to remove.
 */
export function withLower(node: Node, existing: Node | undefined): Node {
  if (!existing || existing.layer >= node.layer) return node;
  const k = existing.inode.kind;
  if (node.inode.kind === "dir" || k === "dir" || (k !== "file" && k !== "symlink")) return node;
  node.lower = existing;
  return node;
}

/**
 * Before `layer` updates directory `existing`'s metadata in place: what it had stays below as
 * its `lower` (the lower layer's archive part writes that), and the name is now `layer`'s.
 */
export function keepDirBelow(existing: Node, layer: number): void {
  if (existing.layer < layer)
    existing.lower = {
      inode: { ...existing.inode },
      layer: existing.layer,
      ...(existing.lower ? { lower: existing.lower } : {}),
    };
  existing.layer = layer;
}

/** The version of a name as it stood once `layer` was applied: its newest at or below it. */
export function nodeAt(node: Node | undefined, layer: number): Node | undefined {
  for (let v: Node | undefined = node; v; v = v.lower) if (v.layer <= layer) return v;
  return undefined;
}

/** Every layer some name of the tree (or a version below it, Node.lower) was written by, in order. */
export function treeLayers(tree: Tree): number[] {
  const layers = new Set<number>();
  for (const { node } of tree.walk())
    for (let v: Node | undefined = node; v; v = v.lower) if (v.layer >= 0) layers.add(v.layer);
  return [...layers].sort((a, b) => a - b);
}

/** The layer of files added from the host (build --add): above the image's, below slimroot's. */
export const ADDED_LAYER = 1_000_000;

/** The layer of what slimroot adds (its init, /etc files, directories): above any image's layers. */
export const SLIMROOT_LAYER = 1_000_001;

/** One path of the tree as a writer sees it, parents before children. */
export interface TreeEntry {
  /** "" for the root, else "usr/bin/env". */
  path: string;
  inode: Inode;
  /** The name's node: the layer that wrote it, and what lower layers had there. */
  node: Node;
}

export function dirInode(mode = 0o755, uid = 0, gid = 0, mtime = 0): Inode {
  return { kind: "dir", mode, uid, gid, mtime };
}

/**
 * A filesystem tree held as metadata; file bodies live in a Spool or on the host. Its budget
 * is what every reader that adds to it checks before adding (entries, depth, bytes).
 */
export class Tree {
  readonly root: Node = { inode: dirInode(), children: new Map(), layer: -1 };

  constructor(readonly budget: Budget = new Budget()) {}

  get(path: string): Node | undefined {
    if (path === "") return this.root;
    let node: Node | undefined = this.root;
    for (const seg of path.split("/")) {
      node = node?.children?.get(seg);
      if (!node) return undefined;
    }
    return node;
  }

  /**
   * The directory node for `dir`, creating missing directories (0755 root:root, as runtimes
   * do for parents a layer does not list). Returns the first path component that exists and
   * is not a directory (or a symlink) via `blocked` instead of walking through it.
   */
  ensureDir(dir: string, layer: number): { node?: Node; blocked?: string } {
    let node = this.root;
    let path = "";
    if (dir === "") return { node };
    for (const seg of dir.split("/")) {
      path = joinImagePath(path, seg);
      let child = node.children!.get(seg);
      if (!child) {
        child = { inode: dirInode(), children: new Map(), layer };
        node.children!.set(seg, child);
      } else if (child.inode.kind !== "dir") {
        return { blocked: path };
      }
      node = child;
    }
    return { node };
  }

  /** Sets `path` to `node`, replacing whatever was there (a directory with its subtree). */
  set(path: string, node: Node): void {
    if (path === "") {
      this.root.inode = node.inode;
      this.root.layer = node.layer;
      return;
    }
    const parent = this.get(parentOf(path));
    if (!parent?.children) throw new Error(`internal: parent of ${path} is not a directory`);
    parent.children.set(baseOf(path), node);
  }

  remove(path: string): boolean {
    const parent = this.get(parentOf(path));
    return parent?.children?.delete(baseOf(path)) ?? false;
  }

  /**
   * Every path, depth first, children in byte order of their names: parents come first.
   * Iterative (a stack of sorted name lists), so a tree thousands of directories deep cannot
   * overflow the call stack.
   */
  *walk(from = "", node: Node | undefined = this.get(from)): Generator<TreeEntry> {
    if (!node) return;
    yield { path: from, inode: node.inode, node };
    const stack: { dir: string; node: Node; names: string[]; next: number }[] = [];
    const enter = (dir: string, n: Node) => {
      if (n.children?.size)
        stack.push({ dir, node: n, names: [...n.children.keys()].sort(compareNames), next: 0 });
    };
    enter(from, node);
    while (stack.length) {
      const top = stack[stack.length - 1]!;
      if (top.next === top.names.length) {
        stack.pop();
        continue;
      }
      const name = top.names[top.next++]!;
      const child = top.node.children!.get(name);
      // A name removed while the walk is under way (pruning) is passed over, as before.
      if (!child) continue;
      const path = joinImagePath(top.dir, name);
      yield { path, inode: child.inode, node: child };
      enter(path, child);
    }
  }
}

/** Bytes of file content in the tree, each hard-linked inode once. */
export function contentBytes(tree: Tree): number {
  const seen = new Set<unknown>();
  let total = 0;
  for (const { inode } of tree.walk()) {
    if (inode.content && !seen.has(inode)) total += inode.content.size;
    seen.add(inode);
  }
  return total;
}

/** Byte-wise comparison of names (see nameBytes), so the order does not depend on the locale. */
export function compareNames(a: string, b: string): number {
  // Without surrogates, UTF-16 code unit order is code point order, which is UTF-8 byte order.
  if (!SURROGATE.test(a) && !SURROGATE.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  return Buffer.compare(nameBytes(a), nameBytes(b));
}

const SURROGATE = /[\ud800-\udfff]/;
