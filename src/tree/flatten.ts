import type { Readable } from "node:stream";
import { extract, type Header } from "tar-stream";
import { UserError } from "../util/errors.js";
import { baseOf, EscapeError, normalizeImagePath, parentOf } from "./path.js";
import type { Spool } from "./spool.js";
import type { EntryKind, Inode, Tree } from "./tree.js";

const WHITEOUT_PREFIX = ".wh.";
const OPAQUE_MARKER = ".wh..wh..opq";

/**
 * Applies one layer (an uncompressed tar stream) to `tree` the way a container runtime
 * unpacks it: whiteouts and opaque directories hide lower layers, a later entry replaces
 * an earlier one (a directory replaced by a file drops its subtree; a directory over a
 * directory keeps its children), hard links share an inode. Bodies go to `spool`.
 * Anything that would land outside the root or be written through a symlink is refused.
 */
export async function applyLayer(
  tree: Tree,
  tar: Readable,
  layerIndex: number,
  layerName: string,
  spool: Spool,
): Promise<void> {
  const ex = extract();
  let current = "";
  const fail = (msg: string) => new UserError(`layer ${layerName}: ${msg}`);
  tar.on("error", (err) => ex.destroy(err));
  tar.pipe(ex);
  try {
    for await (const entry of ex) {
      const header = entry.header;
      current = header.name;
      try {
        await applyEntry(tree, header, entry as unknown as EntryBody, layerIndex, spool);
      } catch (err) {
        entry.resume();
        if (err instanceof EscapeError) throw fail(`entry ${header.name}: ${err.message}`);
        if (err instanceof EntryError) throw fail(`entry ${header.name}: ${err.message}`);
        throw err;
      }
    }
  } catch (err) {
    tar.unpipe(ex);
    tar.destroy();
    if (err instanceof UserError) throw err;
    const msg = err instanceof Error ? err.message : String(err);
    if (msg === "Unexpected end of data") {
      throw fail(current ? `truncated tar: entry ${current} is cut short` : "truncated tar");
    }
    if (msg.startsWith("Invalid tar header")) throw fail(`not a tar archive or corrupt header (${msg})`);
    throw fail(msg);
  }
}

class EntryError extends Error {}

/** A tar entry's body as tar-stream hands it over (a streamx Readable). */
type EntryBody = AsyncIterable<Buffer> & { resume(): unknown };

function kindOf(type: Header["type"] | string): EntryKind | "link" | null {
  switch (type) {
    case "file":
    case "contiguous-file":
      return "file";
    case "directory":
      return "dir";
    case "symlink":
      return "symlink";
    case "link":
      return "link";
    case "character-device":
      return "char";
    case "block-device":
      return "block";
    case "fifo":
      return "fifo";
    default:
      return null;
  }
}

async function applyEntry(
  tree: Tree,
  header: Header,
  body: EntryBody,
  layer: number,
  spool: Spool,
): Promise<void> {
  const path = normalizeImagePath(header.name);
  const kind = kindOf(header.type);
  const base = baseOf(path);
  const dir = parentOf(path);

  if (base.startsWith(WHITEOUT_PREFIX)) {
    body.resume();
    const parent = reachableDir(tree, dir, layer);
    if (base === OPAQUE_MARKER) {
      // Hide what lower layers put in the directory; keep what this layer already wrote.
      for (const [name, child] of parent.children!) if (child.layer < layer) parent.children!.delete(name);
    } else {
      parent.children!.delete(base.slice(WHITEOUT_PREFIX.length));
    }
    return;
  }
  if (kind === null) {
    // Unknown entry types (e.g. GNU sparse, volume labels) carry nothing a rootfs needs.
    body.resume();
    return;
  }

  const parent = path === "" ? undefined : reachableDir(tree, dir, layer);
  const existing = path === "" ? tree.root : parent!.children!.get(base);
  const meta = {
    mode: (header.mode ?? 0o644) & 0o7777,
    uid: header.uid ?? 0,
    gid: header.gid ?? 0,
    mtime: Math.floor((header.mtime?.getTime() ?? 0) / 1000),
  };

  if (kind === "link") {
    body.resume();
    const target = normalizeImagePath(header.linkname ?? "");
    const targetNode = tree.get(target);
    if (!targetNode || target === "")
      throw new EntryError(`hard link target ${header.linkname} is not in the image`);
    if (targetNode.inode.kind === "dir") throw new EntryError(`hard link to directory ${header.linkname}`);
    if (target === path) return;
    parent!.children!.set(base, { inode: targetNode.inode, layer });
    return;
  }

  if (kind === "dir") {
    body.resume();
    if (existing?.inode.kind === "dir") {
      // A directory over a directory updates its metadata and keeps its children.
      Object.assign(existing.inode, meta);
      existing.layer = layer;
      return;
    }
    const node = { inode: { kind: "dir" as const, ...meta }, children: new Map(), layer };
    if (path === "") tree.set("", node);
    else parent!.children!.set(base, node);
    return;
  }

  const inode: Inode = { kind, ...meta };
  if (kind === "file") {
    inode.content = await spool.append(body);
    if (inode.content.size !== (header.size ?? 0)) throw new EntryError("body shorter than its header says");
  } else {
    body.resume();
    if (kind === "symlink") inode.target = header.linkname ?? "";
    if (kind === "char" || kind === "block") {
      inode.rdevMajor = header.devmajor ?? 0;
      inode.rdevMinor = header.devminor ?? 0;
    }
  }
  if (path === "") throw new EntryError("the image root must be a directory");
  parent!.children!.set(base, { inode, layer });
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
