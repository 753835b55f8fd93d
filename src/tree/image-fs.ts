import {
  closeSync,
  lstatSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  realpathSync,
  type Stats,
} from "node:fs";
import { dirname, join } from "node:path";
import { compareNames, type EntryKind, type Tree } from "./tree.js";

/**
 * A read-only view of an image's filesystem, for code that must look at files the way the
 * image's own programs would (the ELF closure). Paths are absolute inside the image
 * ("/usr/lib/x") and taken literally: no call follows a symlink in any component, so callers
 * resolve with resolvePath() first.
 */
export interface ImageFs {
  lstat(path: string): ImageStat | undefined;
  /** The target as stored, for symlinks only. */
  readlink(path: string): string | undefined;
  /** Regular files only; at most the first `limit` bytes when given. */
  readFile(path: string, limit?: number): Promise<Buffer | undefined>;
  /** Names in a directory, in byte order. */
  readdir(path: string): string[] | undefined;
}

export interface ImageStat {
  kind: EntryKind;
  /** Permission bits (mask 0o7777). */
  mode: number;
  /** Bytes for regular files, target length for symlinks, 0 otherwise. */
  size: number;
}

/** Splits an image path into its names, dropping empty and "." segments. */
function segments(path: string): string[] {
  return path.split("/").filter((s) => s !== "" && s !== ".");
}

/** The names of a path with ".." taken lexically and clamped at the root, so it cannot leave it. */
function literal(path: string): string[] {
  const out: string[] = [];
  for (const seg of segments(path)) {
    if (seg === "..") out.pop();
    else out.push(seg);
  }
  return out;
}

/** ImageFs over a flattened image. */
export function treeFs(tree: Tree): ImageFs {
  const node = (path: string) => tree.get(literal(path).join("/"));
  return {
    lstat(path) {
      const n = node(path);
      if (!n) return undefined;
      const { kind, mode } = n.inode;
      const size =
        kind === "file"
          ? (n.inode.content?.size ?? 0)
          : kind === "symlink"
            ? (n.inode.target?.length ?? 0)
            : 0;
      return { kind, mode, size };
    },
    readlink(path) {
      const n = node(path);
      return n?.inode.kind === "symlink" ? n.inode.target : undefined;
    },
    async readFile(path, limit = Number.POSITIVE_INFINITY) {
      const n = node(path);
      if (n?.inode.kind !== "file") return undefined;
      const content = n.inode.content;
      if (!content || limit <= 0) return Buffer.alloc(0);
      const chunks: Buffer[] = [];
      let got = 0;
      const stream = content.open();
      try {
        for await (const chunk of stream) {
          chunks.push(chunk as Buffer);
          got += (chunk as Buffer).length;
          if (got >= limit) break;
        }
      } finally {
        stream.destroy();
      }
      const all = Buffer.concat(chunks);
      return all.length > limit ? all.subarray(0, limit) : all;
    },
    readdir(path) {
      const n = node(path);
      if (n?.inode.kind !== "dir" || !n.children) return undefined;
      return [...n.children.keys()].sort(compareNames);
    },
  };
}

function kindOf(st: Stats): EntryKind | undefined {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "dir";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isCharacterDevice()) return "char";
  if (st.isBlockDevice()) return "block";
  if (st.isFIFO()) return "fifo";
  if (st.isSocket()) return "socket";
  return undefined;
}

/**
 * ImageFs over a host directory treated as an image root (root "/" for a host executable's
 * closure). The host kernel would follow a symlink in the middle of a path (an absolute one
 * out of the root), so a path whose directory is not where it literally says is not there,
 * as in treeFs.
 */
export function hostFs(root = "/"): ImageFs {
  let base = root;
  try {
    base = realpathSync(root);
  } catch {}
  const host = (path: string): string | undefined => {
    const h = join(base, ...literal(path));
    const dir = dirname(h);
    try {
      return h === base || realpathSync(dir) === dir ? h : undefined;
    } catch {
      return undefined;
    }
  };
  const stat = (path: string) => {
    const h = host(path);
    if (h === undefined) return undefined;
    try {
      return lstatSync(h);
    } catch {
      return undefined;
    }
  };
  return {
    lstat(path) {
      const st = stat(path);
      if (!st) return undefined;
      const kind = kindOf(st);
      if (!kind) return undefined;
      return { kind, mode: st.mode & 0o7777, size: kind === "dir" ? 0 : st.size };
    },
    readlink(path) {
      const h = host(path);
      if (h === undefined) return undefined;
      try {
        return readlinkSync(h);
      } catch {
        return undefined;
      }
    },
    async readFile(path, limit = Number.POSITIVE_INFINITY) {
      const st = stat(path);
      if (!st?.isFile()) return undefined;
      let fd: number;
      try {
        fd = openSync(host(path)!, "r");
      } catch {
        return undefined;
      }
      try {
        // Sized from lstat, then read until EOF: a file that changes meanwhile is cut or short.
        const buf = Buffer.allocUnsafe(Math.min(st.size, limit));
        let got = 0;
        while (got < buf.length) {
          const n = readSync(fd, buf, got, buf.length - got, got);
          if (n === 0) break;
          got += n;
        }
        return buf.subarray(0, got);
      } catch {
        return undefined;
      } finally {
        closeSync(fd);
      }
    },
    readdir(path) {
      if (!stat(path)?.isDirectory()) return undefined;
      try {
        return readdirSync(host(path)!).sort(compareNames);
      } catch {
        return undefined;
      }
    },
  };
}

/** Linux's limit on symlinks followed while resolving one path (MAXSYMLINKS). */
export const MAX_SYMLINKS = 40;

export interface ResolvedPath {
  /** Absolute and free of symlinks, except the last name when followLast is false. */
  path: string;
  /** Every symlink passed through, absolute, in the order met: all must stay in the image. */
  links: string[];
}

/**
 * Resolves `path` the way the kernel would with the image as its root: absolute link targets
 * start again at the image root and ".." stops there, so nothing can point outside. ".." is
 * physical (it leaves the directory a link led to). Returns undefined when a component other
 * than the last is missing or not a directory, or after MAX_SYMLINKS links; a missing last
 * component still gives its path, which lstat() then reports as absent; so does any missing
 * component with `partial` (the rest of the path appended as it is: a lookup that failed,
 * with the links met before it).
 */
export function resolvePath(
  fs: ImageFs,
  path: string,
  opts: { followLast?: boolean; partial?: boolean } = {},
): ResolvedPath | undefined {
  const followLast = opts.followLast ?? true;
  const done: string[] = [];
  const links: string[] = [];
  let rest = segments(path);
  let followed = 0;
  while (rest.length > 0) {
    const seg = rest[0]!;
    rest = rest.slice(1);
    if (seg === "..") {
      done.pop();
      continue;
    }
    const here = `/${[...done, seg].join("/")}`;
    const st = fs.lstat(here);
    if (!st) {
      if (rest.length > 0 && !opts.partial) return undefined;
      done.push(seg, ...rest);
      break;
    }
    if (st.kind === "symlink" && (rest.length > 0 || followLast)) {
      if (++followed > MAX_SYMLINKS) return undefined;
      const target = fs.readlink(here);
      // An empty target is ENOENT for the kernel.
      if (!target) return undefined;
      if (!links.includes(here)) links.push(here);
      if (target.startsWith("/")) done.length = 0;
      rest = [...segments(target), ...rest];
      continue;
    }
    if (st.kind !== "dir" && rest.length > 0) return undefined;
    done.push(seg);
  }
  return { path: `/${done.join("/")}`, links };
}
