import { createHash } from "node:crypto";
import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import { readArchiveFile } from "../../src/artifact/initramfs.js";
import {
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
} from "../../src/cpio/newc.js";

/** What two trees must agree on, path by path. */
export interface Snap {
  type: string;
  mode: string;
  owner: string;
  target?: string;
  sha256?: string;
  rdev?: string;
  /** Another path of the same inode (the first in sorted order), for hard links. */
  linkOf?: string;
}

const TYPES: Record<number, string> = {
  [S_IFSOCK]: "socket",
  [S_IFLNK]: "symlink",
  [S_IFREG]: "file",
  [S_IFBLK]: "block",
  [S_IFDIR]: "dir",
  [S_IFCHR]: "char",
  [S_IFIFO]: "fifo",
};

const hash = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** A host directory (e.g. from `umoci raw unpack`), never following symlinks. */
export async function snapshotDir(root: string): Promise<Map<string, Snap>> {
  const out = new Map<string, Snap>();
  const inodes = new Map<string, string>();
  const walk = async (dir: string, rel: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      const relPath = rel ? `${rel}/${name}` : name;
      const st = await lstat(path);
      const type = TYPES[st.mode & S_IFMT] ?? "?";
      const snap: Snap = { type, mode: (st.mode & 0o7777).toString(8), owner: `${st.uid}:${st.gid}` };
      if (type === "symlink") snap.target = await readlink(path);
      if (type === "file") snap.sha256 = hash(await readFile(path));
      if (type === "char" || type === "block")
        snap.rdev = `${Math.floor(st.rdev / 256) & 0xfff},${st.rdev & 0xff}`;
      if (type !== "dir" && st.nlink > 1) {
        const key = `${st.dev}:${st.ino}`;
        if (inodes.has(key)) snap.linkOf = inodes.get(key);
        else inodes.set(key, relPath);
      }
      out.set(relPath, snap);
      if (type === "dir") await walk(path, relPath);
    }
  };
  await walk(root, "");
  return out;
}

/** An archive written by slimroot, read back with our reader. */
export async function snapshotArchive(file: string): Promise<Map<string, Snap>> {
  const out = new Map<string, Snap>();
  const firstName = new Map<number, string>();
  const byIno = new Map<number, Snap[]>();
  for await (const e of readArchiveFile(file)) {
    if (e.name === ".") continue;
    const type = TYPES[e.mode & S_IFMT] ?? "?";
    const snap: Snap = { type, mode: (e.mode & 0o7777).toString(8), owner: `${e.uid}:${e.gid}` };
    if ((e.mode & S_IFMT) === S_IFLNK) snap.target = e.body.toString();
    if ((e.mode & S_IFMT) === S_IFREG) {
      snap.sha256 = hash(e.body);
      if (e.nlink > 1) {
        if (firstName.has(e.ino)) snap.linkOf = firstName.get(e.ino);
        else firstName.set(e.ino, e.name);
        byIno.set(e.ino, [...(byIno.get(e.ino) ?? []), snap]);
      }
    }
    if (type === "char" || type === "block") snap.rdev = `${e.rdevMajor},${e.rdevMinor}`;
    out.set(e.name, snap);
  }
  // The body rides on the last name of a hard-linked inode: give every name its hash.
  for (const group of byIno.values()) {
    const withBody = group.find((s) => s.sha256 !== hash(Buffer.alloc(0))) ?? group[0]!;
    for (const s of group) s.sha256 = withBody.sha256;
  }
  return out;
}

/** Differences between two snapshots, as readable lines (empty when equal). */
export function diffSnapshots(
  want: Map<string, Snap>,
  got: Map<string, Snap>,
  ignore: (p: string) => boolean = () => false,
): string[] {
  const lines: string[] = [];
  for (const [p, w] of want) {
    if (ignore(p)) continue;
    const g = got.get(p);
    if (!g) lines.push(`missing ${p}`);
    else if (JSON.stringify(w) !== JSON.stringify(g))
      lines.push(`differs ${p}: want ${JSON.stringify(w)} got ${JSON.stringify(g)}`);
  }
  for (const p of got.keys()) {
    // slimroot creates /etc for its config when the image has none.
    if (!want.has(p) && !ignore(p) && !(p === "etc" && !want.has("etc"))) lines.push(`extra ${p}`);
  }
  return lines;
}

/** slimroot's own additions, which the source image does not have. */
export const isSlimrootFile = (p: string) =>
  p === "init" || p === "etc/slimroot" || p.startsWith("etc/slimroot/");
