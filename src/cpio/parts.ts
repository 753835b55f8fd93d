/**
 * An initramfs as one archive per layer (build --layers): each source layer's own files, then
 * the files added with --add, then slimroot's (its init, app.conf). The kernel unpacks the
 * archives in order into one rootfs, so the parts together give the tree one archive would.
 *
 * Part k holds, for each name the image keeps, the version layer k wrote (a file an upper layer
 * replaced is written in the lower part as that layer had it, and again in the upper part), and
 * the directories above those names, each with the metadata it had at layer k. So a part's
 * bytes depend only on its own layer and on which of its names the image keeps: ten apps on one
 * base whose images keep the whole base (`--minimize none`) have byte-identical base parts.
 *
 * What the kernel's unpacker (init/initramfs.c, 6.1) does with a name that exists: a directory
 * is kept and takes the new owner and mode; a file or symlink of another type is removed first;
 * a regular file over a regular file is opened with O_TRUNC, so it is written through every
 * hard link to it. A lower version whose inode has several names in its part is therefore left
 * out of that part (the upper part creates the name afresh). Hard links are matched per archive
 * (its link table is freed at each trailer), so a link group never spans parts: one whose names
 * came from several layers is written whole in the highest one's part, and each part numbers
 * its own inodes and counts its own links.
 */
import type { Inode, Node, Tree } from "../tree/tree.js";
import { ADDED_LAYER, SLIMROOT_LAYER } from "../tree/tree.js";
import { type CpioRecord, inodeRecord } from "./writer.js";

/** One archive of a layered initramfs: the layer it holds, and how the .why names it. */
export interface CpioPart {
  layer: number;
  /** "layer 0" (the image's first), "added" (--add), "slimroot". */
  name: string;
}

/** The parts of `tree`, in unpacking order: every layer some kept name was written by. */
export function cpioParts(tree: Tree): CpioPart[] {
  const layers = new Set<number>();
  for (const { node } of tree.walk())
    for (let v: Node | undefined = node; v; v = v.lower) if (v.layer >= 0) layers.add(v.layer);
  return [...layers]
    .sort((a, b) => a - b)
    .map((layer) => ({
      layer,
      name: layer === SLIMROOT_LAYER ? "slimroot" : layer === ADDED_LAYER ? "added" : `layer ${layer}`,
    }));
}

/** The version of a name that `layer` wrote, if any. */
function versionAt(node: Node, layer: number): Node | undefined {
  for (let v: Node | undefined = node; v; v = v.lower) if (v.layer === layer) return v;
  return undefined;
}

/** A directory as it was once `layer` was applied: its newest version at or below it. */
function dirAt(node: Node, layer: number): Inode {
  for (let v: Node | undefined = node; v; v = v.lower) if (v.layer <= layer) return v.inode;
  return node.inode;
}

/** The records of one part of `tree` (see the module comment), parents first, names byte-sorted. */
export function* partRecords(
  tree: Tree,
  part: CpioPart,
  { clampMtime }: { clampMtime: number },
): Generator<CpioRecord> {
  const { layer } = part;
  // Names this part writes: its own directories and its layer's version of every other name.
  // A hard-link group whose names came from several layers is written whole in the part of
  // the highest (the kernel links names within one archive only).
  const top = new Map<Inode, number>();
  for (const { node } of tree.walk())
    if (node.inode.kind !== "dir") top.set(node.inode, Math.max(top.get(node.inode) ?? -1, node.layer));
  const entries: { path: string; inode: Inode; dir: boolean; lower: boolean }[] = [];
  const names = new Map<Inode, number>();
  for (const { path, node } of tree.walk()) {
    if (node.inode.kind === "dir") {
      entries.push({ path, inode: dirAt(node, layer), dir: true, lower: false });
      continue;
    }
    const v = top.get(node.inode) === layer ? node : versionAt(node, layer);
    if (!v) continue;
    entries.push({ path, inode: v.inode, dir: false, lower: v !== node });
    names.set(v.inode, (names.get(v.inode) ?? 0) + 1);
  }
  // A lower version with several names here would be overwritten through its links above.
  const kept = entries.filter((e) => e.dir || !e.lower || names.get(e.inode) === 1);
  const needed = new Set<string>([""]);
  const own = (path: string) => versionAt(tree.get(path)!, layer) !== undefined;
  for (const e of kept) {
    if (e.dir && !own(e.path)) continue;
    for (let p = e.path; p !== "" && !needed.has(p); p = p.slice(0, Math.max(0, p.lastIndexOf("/"))))
      needed.add(p);
  }
  const written = kept.filter((e) => !e.dir || needed.has(e.path));

  const count = new Map<Inode, number>();
  const subdirs = new Map<string, number>();
  for (const e of written) {
    count.set(e.inode, (count.get(e.inode) ?? 0) + 1);
    if (e.dir && e.path !== "") {
      const parent = e.path.slice(0, Math.max(0, e.path.lastIndexOf("/")));
      subdirs.set(parent, (subdirs.get(parent) ?? 0) + 1);
    }
  }
  // Numbers in order of first appearance; a directory always gets its own (dirAt may give two
  // directories one metadata object), every name of a hard-linked file the same one.
  let next = 0;
  const ino = new Map<Inode, number>();
  const seen = new Map<Inode, number>();
  for (const e of written) {
    if (e.dir) {
      const nlink = 2 + (subdirs.get(e.path) ?? 0);
      yield inodeRecord(e.path, e.inode, { ino: ++next, nlink, last: true, clampMtime });
      continue;
    }
    if (!ino.has(e.inode)) ino.set(e.inode, ++next);
    const total = count.get(e.inode)!;
    const nth = (seen.get(e.inode) ?? 0) + 1;
    seen.set(e.inode, nth);
    yield inodeRecord(e.path, e.inode, {
      ino: ino.get(e.inode)!,
      nlink: total,
      last: nth === total,
      clampMtime,
    });
  }
}
