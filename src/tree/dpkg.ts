/**
 * Which Debian package each file of an image belongs to, as the image's own dpkg database said
 * once a given layer was applied: `/var/lib/dpkg/status` (each package's architecture, version
 * and conffiles) and `/var/lib/dpkg/info/PKG.list` (the paths it installed). Read as data from
 * the tree, at the versions of those files that layer saw (Node.lower); nothing of the image is
 * run. For build --layers' split by package (cpio/parts.ts).
 */
import { nameFromBytes } from "../util/name-bytes.js";
import { resolvePath, treeFs } from "./image-fs.js";
import { baseOf, parentOf } from "./path.js";
import { ADDED_LAYER, type Node, nodeAt, type Tree, treeLayers } from "./tree.js";

export interface DpkgPackage {
  /** As dpkg names its info files: "bash", "libc6:amd64". */
  key: string;
  version: string;
}

/** Tree path ("usr/bin/bash") -> the package that installed the file there. */
export type DpkgOwners = Map<string, DpkgPackage>;

/** For each image layer with a dpkg database: its owners (see dpkgDatabase). */
export type LayerOwners = Map<number, DpkgOwners>;

const STATUS = "var/lib/dpkg/status";
const INFO = "var/lib/dpkg/info";

interface StatusEntry {
  version: string;
  conffiles: string[];
}

/** status's paragraphs by "name" and "name:arch" (a name two paragraphs share maps to neither). */
function parseStatus(text: string): Map<string, StatusEntry | null> {
  const out = new Map<string, StatusEntry | null>();
  for (const para of text.split(/\n[ \t]*\n/)) {
    const fields = new Map<string, string>();
    let field = "";
    for (const line of para.split("\n")) {
      if ((line.startsWith(" ") || line.startsWith("\t")) && field) {
        fields.set(field, `${fields.get(field)}\n${line}`);
        continue;
      }
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      field = line.slice(0, colon).toLowerCase();
      fields.set(field, line.slice(colon + 1).trim());
    }
    const [name, arch, version] = [fields.get("package"), fields.get("architecture"), fields.get("version")];
    if (!name || !version) continue;
    // " /etc/x.conf MD5 [obsolete]": the path is what precedes the digest.
    const conffiles = (fields.get("conffiles") ?? "")
      .split("\n")
      .map((l) => l.trim().split(" "))
      .map((w) => (w.at(-1) === "obsolete" || w.at(-1) === "remove-on-upgrade" ? w.slice(0, -1) : w))
      .filter((w) => w.length >= 2)
      .map((w) => w.slice(0, -1).join(" "));
    const entry = { version, conffiles };
    for (const key of arch ? [name, `${name}:${arch}`] : [name]) out.set(key, out.has(key) ? null : entry);
  }
  return out;
}

/** A file's text as that version had it; undefined for no file or one over the read limit. */
async function readNode(node: Node | undefined, limit: number): Promise<string | undefined> {
  const content = node?.inode.kind === "file" ? node.inode.content : undefined;
  if (!content || content.size > limit) return undefined;
  const chunks: Buffer[] = [];
  for await (const chunk of content.open()) chunks.push(chunk as Buffer);
  // Names are bytes (tree/path.ts): the same decoding as the tree's names.
  return nameFromBytes(Buffer.concat(chunks));
}

/**
 * The image's package database as each layer saw it: `at(layer)` gives the owner of every file
 * one installed package lists, or undefined when the image has no database at that layer. A
 * path listed by two packages (a diversion, Multi-Arch: same) and every conffile (an image edits
 * them) has no owner. Listed paths are resolved in the tree (a merged-/usr image lists
 * /lib/x86_64-linux-gnu/libc.so.6, which is usr/lib/...), the last name not followed.
 */
export function dpkgDatabase(tree: Tree): { at(layer: number): Promise<DpkgOwners | undefined> } {
  const limit = tree.budget.limits.read;
  const fs = treeFs(tree);
  const dirs = new Map<string, string | undefined>();
  const resolve = (listed: string): string | undefined => {
    const path = listed.replace(/^\/+/, "");
    if (path === "" || path === ".") return undefined;
    const parent = parentOf(path);
    if (!dirs.has(parent)) dirs.set(parent, resolvePath(fs, `/${parent}`)?.path.slice(1));
    const dir = dirs.get(parent);
    return dir === undefined ? undefined : dir === "" ? baseOf(path) : `${dir}/${baseOf(path)}`;
  };
  const lists = new Map<Node, string[]>();
  return {
    async at(layer) {
      const status = await readNode(nodeAt(tree.get(STATUS), layer), limit);
      const info = tree.get(INFO);
      if (status === undefined || !info?.children) return undefined;
      const packages = parseStatus(status);
      const owners: DpkgOwners = new Map();
      const shared = new Set<string>();
      const conffiles = new Set<string>();
      for (const [file, child] of [...info.children].sort(([a], [b]) => (a < b ? -1 : 1))) {
        if (!file.endsWith(".list")) continue;
        const key = file.slice(0, -".list".length);
        const entry = packages.get(key);
        const node = nodeAt(child, layer);
        if (!entry || !node) continue;
        let paths = lists.get(node);
        if (!paths) {
          const text = await readNode(node, limit);
          paths = (text ?? "").split("\n").flatMap((l) => resolve(l) ?? []);
          lists.set(node, paths);
        }
        const pkg = { key, version: entry.version };
        for (const path of paths) {
          if (owners.has(path) && owners.get(path)!.key !== key) shared.add(path);
          else owners.set(path, pkg);
        }
        for (const c of entry.conffiles) {
          const path = resolve(c);
          if (path !== undefined) conffiles.add(path);
        }
      }
      for (const path of [...shared, ...conffiles]) owners.delete(path);
      return owners;
    },
  };
}

/**
 * dpkgDatabase's answer for every image layer of the tree, read now: the build reads it before
 * minimizing, which drops the database (--minimize safe and above) but not the files it lists.
 */
export async function dpkgOwners(tree: Tree): Promise<LayerOwners> {
  const db = dpkgDatabase(tree);
  const out: LayerOwners = new Map();
  for (const layer of treeLayers(tree)) {
    if (layer >= ADDED_LAYER) continue;
    const owners = await db.at(layer);
    if (owners) out.set(layer, owners);
  }
  return out;
}
