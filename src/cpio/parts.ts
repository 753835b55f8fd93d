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
 *
 * Split by package: within an image layer's part, the files the image's dpkg database says one
 * package installed (tree/dpkg.ts) go into a part of that package, placed before the layer's
 * remainder, when they weigh at least PACKAGE_PART_MIN_BYTES. Such a part holds only the
 * package's files of that layer (a hard-link group only when all its names are the package's;
 * no conffile, which an image edits) and the directories above them, every one 0755 root:root
 * with mtime 0: so it is the same bytes in any image that installed the same package version
 * the same way, whatever else the image holds. The layer's remainder, unpacked right after, holds
 * everything else of the layer and every directory the whole layer part held, with the metadata
 * it held them with, so the directories end as they would without the split (a directory
 * written again takes the new owner and mode; mtimes are set once the whole initrd is unpacked,
 * the last record's). The remainder and the package parts of one layer share no other name, and
 * all of them come after the layers below and before the layers above: the joined parts unpack
 * to the tree the unsplit ones give. An image without a dpkg database is split per layer only.
 */
import { type DpkgPackage, dpkgOwners, type LayerOwners } from "../tree/dpkg.js";
import type { Inode, Node, Tree } from "../tree/tree.js";
import { ADDED_LAYER, dirInode, nodeAt, SLIMROOT_LAYER, treeLayers } from "../tree/tree.js";
import { type CpioRecord, inodeRecord } from "./writer.js";

/**
 * A package gets a part of its own from this many bytes of files in one layer. Each part costs
 * a layer in the manifest (about 300 bytes), a request on every pull that lacks it, a blob and
 * link files in the registry (a few KiB) and an archive trailer and compressor header (about
 * 150 bytes); below 1 MiB the share it could save is smaller than a round trip is worth. The
 * packages apps share (libicu72, libssl3, libpython3.11-stdlib, perl-modules, ...) are 2-40 MiB.
 * Measured on test/push-layers.test.ts's ten apps (2026-12-03, distinct parts' bytes over the
 * files'): no split 0.458x in 19 distinct parts; 4 MiB 0.362x in 37; 1 MiB 0.355x in 50;
 * 256 KiB 0.350x in 82: below 1 MiB the parts multiply for little.
 */
export const PACKAGE_PART_MIN_BYTES = 1024 * 1024;

/** A name a part writes: its path, what it writes there, and whether it is a directory. */
interface PartEntry {
  path: string;
  inode: Inode;
  dir: boolean;
}

/** One archive of a layered initramfs: the layer it holds, and how the .why names it. */
export interface CpioPart {
  layer: number;
  /** "layer 0" (the image's first), "layer 0 libc6:amd64" (a package's), "added" (--add), "slimroot". */
  name: string;
  /** A package part: the dpkg package whose files of `layer` it holds. */
  package?: DpkgPackage;
  /** What it writes, parents first, names byte-sorted. */
  entries: PartEntry[];
}

export interface PartOptions {
  /** Split each image layer by dpkg package (default true); false: one part per layer. */
  byPackage?: boolean;
  /** The least bytes a package's files in one layer must weigh to be a part (PACKAGE_PART_MIN_BYTES). */
  minPackageBytes?: number;
  /** Each layer's package owners as read before minimizing (tree/dpkg.ts); else read from `tree`. */
  owners?: LayerOwners;
}

/**
 * The parts of `tree`, in unpacking order: for every layer some kept name was written by, its
 * package parts (by key) and then its own.
 */
export async function cpioParts(tree: Tree, o: PartOptions = {}): Promise<CpioPart[]> {
  // A hard-link group whose names came from several layers is written whole in the part of
  // the highest (the kernel links names within one archive only).
  const top = new Map<Inode, number>();
  for (const { node } of tree.walk())
    if (node.inode.kind !== "dir") top.set(node.inode, Math.max(top.get(node.inode) ?? -1, node.layer));
  const owners: LayerOwners = o.byPackage === false ? new Map() : (o.owners ?? (await dpkgOwners(tree)));
  const parts: CpioPart[] = [];
  for (const layer of treeLayers(tree)) {
    const name = layer === SLIMROOT_LAYER ? "slimroot" : layer === ADDED_LAYER ? "added" : `layer ${layer}`;
    const entries = layerEntries(tree, layer, top);
    const own = layer < ADDED_LAYER ? owners.get(layer) : undefined;
    const split = own ? splitByPackage(entries, own, o.minPackageBytes ?? PACKAGE_PART_MIN_BYTES) : [];
    const moved = new Set<PartEntry>();
    for (const { pkg, files } of split) {
      for (const f of files) moved.add(f);
      parts.push({ layer, name: `${name} ${pkg.key}`, package: pkg, entries: withDirs(files) });
    }
    parts.push({ layer, name, entries: moved.size ? entries.filter((e) => !moved.has(e)) : entries });
  }
  return parts;
}

/** A directory as it was once `layer` was applied: its newest version at or below it. */
function dirAt(node: Node, layer: number): Inode {
  return nodeAt(node, layer)?.inode ?? node.inode;
}

/**
 * What layer `layer`'s whole part writes (see the module comment): its own directories and its
 * layer's version of every other name, and the directories above those names.
 */
function layerEntries(tree: Tree, layer: number, top: Map<Inode, number>): PartEntry[] {
  const versionAt = (node: Node) => {
    for (let v: Node | undefined = node; v; v = v.lower) if (v.layer === layer) return v;
    return undefined;
  };
  const entries: (PartEntry & { lower: boolean; own: boolean })[] = [];
  const names = new Map<Inode, number>();
  for (const { path, node } of tree.walk()) {
    if (node.inode.kind === "dir") {
      const own = versionAt(node) !== undefined;
      entries.push({ path, inode: dirAt(node, layer), dir: true, lower: false, own });
      continue;
    }
    const v = top.get(node.inode) === layer ? node : versionAt(node);
    if (!v) continue;
    entries.push({ path, inode: v.inode, dir: false, lower: v !== node, own: true });
    names.set(v.inode, (names.get(v.inode) ?? 0) + 1);
  }
  // A lower version with several names here would be overwritten through its links above.
  const kept = entries.filter((e) => e.dir || !e.lower || names.get(e.inode) === 1);
  const needed = new Set<string>([""]);
  for (const e of kept) {
    if (e.dir && !e.own) continue;
    for (let p = e.path; p !== "" && !needed.has(p); p = parentOf(p)) needed.add(p);
  }
  return kept
    .filter((e) => !e.dir || needed.has(e.path))
    .map(({ path, inode, dir }) => ({ path, inode, dir }));
}

const parentOf = (path: string) => path.slice(0, Math.max(0, path.lastIndexOf("/")));

/**
 * The files of one layer's part that go to package parts, by package key: a file whose every
 * name here one package installed, for packages with at least `min` bytes of them.
 */
function splitByPackage(
  entries: PartEntry[],
  owners: Map<string, DpkgPackage>,
  min: number,
): { pkg: DpkgPackage; files: PartEntry[] }[] {
  // A hard-link group goes whole: to its package when all its names are that package's.
  const choice = new Map<Inode, DpkgPackage | null>();
  for (const e of entries) {
    if (e.dir) continue;
    const pkg = owners.get(e.path) ?? null;
    const before = choice.get(e.inode);
    choice.set(e.inode, before === undefined || before?.key === pkg?.key ? pkg : null);
  }
  const byKey = new Map<string, { pkg: DpkgPackage; files: PartEntry[]; bytes: number }>();
  const counted = new Set<Inode>();
  for (const e of entries) {
    const pkg = e.dir ? undefined : choice.get(e.inode);
    if (!pkg) continue;
    const b = byKey.get(pkg.key) ?? { pkg, files: [], bytes: 0 };
    if (!counted.has(e.inode)) b.bytes += e.inode.content?.size ?? 0;
    counted.add(e.inode);
    b.files.push(e);
    byKey.set(pkg.key, b);
  }
  return [...byKey.values()]
    .filter((b) => b.bytes >= min)
    .sort((a, b) => (a.pkg.key < b.pkg.key ? -1 : a.pkg.key > b.pkg.key ? 1 : 0))
    .map(({ pkg, files }) => ({ pkg, files }));
}

/** The same metadata for every directory of a package part: its bytes owe nothing to the image. */
const PACKAGE_DIR = dirInode(0o755, 0, 0, 0);

/**
 * `files` (in walk order) with the directories above them, the root included (so a part unpacks
 * alone too), each as PACKAGE_DIR, parents first.
 */
function withDirs(files: PartEntry[]): PartEntry[] {
  const out: PartEntry[] = [{ path: "", inode: PACKAGE_DIR, dir: true }];
  const dirs = new Set<string>();
  for (const f of files) {
    const missing: string[] = [];
    for (let p = parentOf(f.path); p !== "" && !dirs.has(p); p = parentOf(p)) missing.push(p);
    for (const p of missing.reverse()) {
      dirs.add(p);
      out.push({ path: p, inode: PACKAGE_DIR, dir: true });
    }
    out.push(f);
  }
  return out;
}

/** The records of one part (see the module comment), parents first, names byte-sorted. */
export function* partRecords(part: CpioPart, { clampMtime }: { clampMtime: number }): Generator<CpioRecord> {
  const written = part.entries;
  const count = new Map<Inode, number>();
  const subdirs = new Map<string, number>();
  for (const e of written) {
    count.set(e.inode, (count.get(e.inode) ?? 0) + 1);
    if (e.dir && e.path !== "") {
      const parent = parentOf(e.path);
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
