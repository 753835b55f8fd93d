import { constants } from "node:fs";
import { access, lstat, readdir, readlink } from "node:fs/promises";
import { spending } from "../util/budget.js";
import { UserError } from "../util/errors.js";
import { baseOf, displayName, joinImagePath, nameFromBytes, normalizeImagePath, parentOf } from "./path.js";
import { hostFileContent } from "./spool.js";
import { ADDED_LAYER, type EntryKind, type Inode, keepDirBelow, type Tree, withLower } from "./tree.js";

export interface HostCopyOptions {
  /** Owner for everything copied; the host's owners when absent. */
  owner?: { uid: number; gid: number };
  layer?: number;
  /** Copy a directory itself but not what is in it. */
  shallow?: boolean;
}

/**
 * Copies a host file or directory into `tree` at `dest` (an image path) without following
 * symlinks: links are kept as links, hard links inside the copy stay hard links, device nodes
 * keep their numbers. Bodies are read from the host when the image is written.
 */
export async function addHostPath(tree: Tree, source: string, dest: string, opts: HostCopyOptions = {}) {
  const layer = opts.layer ?? ADDED_LAYER;
  const byHostInode = new Map<string, Inode>();
  const target = normalizeImagePath(dest);

  // Host paths are handled as bytes, so a name that is not UTF-8 is found on the host and
  // keeps its bytes in the image (see nameFromBytes).
  const visit = async (hostPathBytes: Buffer, imagePath: string) => {
    const hostPath = displayName(nameFromBytes(hostPathBytes));
    let st: Awaited<ReturnType<typeof lstat>>;
    try {
      st = await lstat(hostPathBytes, { bigint: false });
    } catch (err) {
      throw new UserError(
        `${hostPath}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file or directory" : (err as Error).message}`,
      );
    }
    const kind = kindOfMode(st.mode);
    if (!kind) return;
    spending(hostPath, () => {
      tree.budget.entry(imagePath);
      if (kind === "file") tree.budget.file(st.size);
    });
    const key = `${st.dev}:${st.ino}`;
    const shared = kind !== "dir" && st.nlink > 1 ? byHostInode.get(key) : undefined;
    const inode: Inode = shared ?? {
      kind,
      mode: st.mode & 0o7777,
      uid: opts.owner?.uid ?? st.uid,
      gid: opts.owner?.gid ?? st.gid,
      mtime: Math.floor(st.mtimeMs / 1000),
    };
    // Bodies are read when the image is written: say now, naming the file, if one cannot be.
    if (kind === "file" || kind === "dir") await readable(hostPathBytes, hostPath);
    if (!shared) {
      if (kind === "file") inode.content = hostFileContent(hostPathBytes, st.size);
      if (kind === "symlink")
        inode.target = nameFromBytes(await readlink(hostPathBytes, { encoding: "buffer" }));
      if (kind === "char" || kind === "block") {
        inode.rdevMajor = Math.floor(st.rdev / 256) & 0xfff;
        inode.rdevMinor = (st.rdev & 0xff) | (Math.floor(st.rdev / 4096) & 0xfff00);
      }
      if (kind !== "dir" && st.nlink > 1) byHostInode.set(key, inode);
    }
    if (imagePath === "") {
      if (kind !== "dir") throw new UserError(`${hostPath}: cannot replace the image root with a ${kind}`);
      keepDirBelow(tree.root, layer);
      Object.assign(tree.root.inode, {
        mode: inode.mode,
        uid: inode.uid,
        gid: inode.gid,
        mtime: inode.mtime,
      });
    } else {
      const { node: parent, blocked } = tree.ensureDir(parentOf(imagePath), layer);
      if (!parent)
        throw new UserError(
          `${hostPath}: cannot copy to /${imagePath}: /${blocked} in the image is not a directory`,
        );
      const existing = parent.children!.get(baseOf(imagePath));
      // What the image had here stays below (as the flattener keeps it), so a layered
      // initramfs's image parts are the same bytes whatever --add replaces.
      if (kind === "dir" && existing?.inode.kind === "dir") {
        keepDirBelow(existing, layer);
        Object.assign(existing.inode, {
          mode: inode.mode,
          uid: inode.uid,
          gid: inode.gid,
          mtime: inode.mtime,
        });
      } else {
        parent.children!.set(
          baseOf(imagePath),
          withLower({ inode, layer, children: kind === "dir" ? new Map() : undefined }, existing),
        );
      }
    }
    if (kind === "dir" && !opts.shallow) {
      const names = await readdir(hostPathBytes, { encoding: "buffer" });
      for (const name of names) {
        const child = Buffer.concat([hostPathBytes, Buffer.from("/"), name]);
        await visit(child, joinImagePath(imagePath, nameFromBytes(name)));
      }
    }
  };
  await visit(Buffer.from(source), target);
}

async function readable(path: Buffer, hostPath: string): Promise<void> {
  await access(path, constants.R_OK).catch((err: NodeJS.ErrnoException) => {
    throw new UserError(
      `${hostPath}: cannot read (${err.code === "EACCES" ? "permission denied" : err.code})`,
    );
  });
}

function kindOfMode(mode: number): EntryKind | null {
  switch (mode & 0o170000) {
    case 0o100000:
      return "file";
    case 0o040000:
      return "dir";
    case 0o120000:
      return "symlink";
    case 0o020000:
      return "char";
    case 0o060000:
      return "block";
    case 0o010000:
      return "fifo";
    case 0o140000:
      return "socket";
    default:
      return null;
  }
}
