/**
 * Lays a tree out as a real directory for the mkfs tools, and says who owns what in a
 * fakeroot state file.
 *
 * Why fakeroot, for all three formats: Debian 12's tools read the owners, modes and device
 * numbers of their input from lstat(), and an unprivileged user can neither chown nor mknod.
 * mkfs.erofs 1.5 has only --all-root/--force-uid (one owner for everything) and no other
 * input; mksquashfs 4.5.1 pseudo files and debugfs set_inode_field could fix owners after the
 * fact in their own formats, but fakeroot's state file does it once for all three: each
 * staged inode (device, inode number) gets its exact mode (type bits included: device nodes,
 * fifos and sockets are staged as empty files), uid, gid and rdev, and the tool, started
 * under `fakeroot -i`, sees them through lstat(). Hard links are staged as hard links, so the
 * tools find them by inode number as they would on a real tree.
 */
import { createHash, type Hash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { link, lstat, lutimes, mkdir, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { inodeMode } from "../cpio/writer.js";
import { displayName, hostPath, nameBytes } from "../tree/path.js";
import type { Inode, Tree } from "../tree/tree.js";
import { UserError } from "../util/errors.js";

/** Extended attributes (security.capability, ...) of an inode, by name. */
export type Xattrs = (inode: Inode) => ReadonlyMap<string, Buffer> | undefined;

/** The tree's own xattrs, as the layers carried them (PAX SCHILY.xattr.*). */
export const treeXattrs: Xattrs = (inode) => inode.xattrs;

export interface Staged {
  /** The directory holding the tree (its root is the image root). */
  root: string;
  /** fakeroot state file (`fakeroot -i`). */
  fakerootState: string;
  /** `setfattr --restore` input (paths relative to `root`), when any inode has xattrs. */
  xattrDump?: string;
  /** SHA-256 over every path's metadata and file bytes: the seed of UUIDs. */
  digest: Buffer;
  /** What the image holds, for sizing: file bytes in 4 KiB blocks, inodes, directories. */
  blocks4k: number;
  inodes: number;
  dirs: number;
}

/** glibc's makedev(), which is what fakeroot stores as rdev. */
function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffn) << 8n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n) | ((ma & ~0xfffn) << 32n);
}

/**
 * Writes `tree` under `dir` (which must exist and be empty). Mtimes are clamped to `epoch`;
 * the staging user can always read and write what it stages (0600/0700): the image's own
 * modes are in the state file.
 */
export async function stageTree(
  tree: Tree,
  dir: string,
  epoch: number,
  xattrs: Xattrs = treeXattrs,
): Promise<Staged> {
  const root = join(dir, "root");
  await mkdir(root, { mode: 0o700 });
  const hash = createHash("sha256");
  const firstPath = new Map<Inode, { host: Buffer; name: Buffer }>();
  const state: string[] = [];
  const dirs: { path: Buffer; mtime: number }[] = [];
  const owners: { host: Buffer; inode: Inode }[] = [];
  const dump: Buffer[] = [];
  let blocks4k = 0;
  let inodes = 0;
  for (const { path, inode } of tree.walk()) {
    // Bytes, never a string: see hostPath.
    const host = hostPath(root, path);
    const mtime = Math.max(0, Math.min(inode.mtime, epoch));
    hash.update(nameBytes(path));
    hash.update(
      `\0${inode.kind}\0${inode.mode & 0o7777}\0${inode.uid}\0${inode.gid}\0${mtime}\0${inode.rdevMajor ?? 0}\0${inode.rdevMinor ?? 0}\0${inode.content?.size ?? 0}\0`,
    );
    hash.update(Buffer.concat([nameBytes(inode.target ?? ""), Buffer.of(0)]));
    const earlier = firstPath.get(inode);
    if (earlier !== undefined) {
      // The image path, not the host one (the staging directory's name is random).
      hash.update(Buffer.concat([Buffer.from("link "), earlier.name, Buffer.of(0)]));
      await staged(path, link(earlier.host, host));
      continue;
    }
    firstPath.set(inode, { host, name: nameBytes(path) });
    inodes++;
    const attrs = [...(xattrs(inode) ?? new Map<string, Buffer>())]
      .map(([name, value]) => [nameBytes(name), value] as const)
      .sort(([a], [b]) => Buffer.compare(a, b));
    if (attrs.length) {
      dump.push(Buffer.from("# file: "), dumpQuote(path === "" ? Buffer.from(".") : nameBytes(path)), NL);
      for (const [name, value] of attrs) {
        hash.update(
          Buffer.concat([Buffer.from("xattr "), name, Buffer.from(`\0${value.toString("hex")}\0`)]),
        );
        dump.push(dumpQuote(name, "="), Buffer.from(`=0x${value.toString("hex")}`), NL);
      }
      dump.push(NL);
    }
    if (inode.kind === "dir") {
      if (path !== "") await staged(path, mkdir(host, { mode: 0o700 }));
      dirs.push({ path: host, mtime });
      blocks4k++;
    } else if (inode.kind === "symlink") {
      const target = nameBytes(inode.target ?? "");
      await staged(path, symlink(target, host));
      if (target.length >= 60) blocks4k++;
    } else if (inode.kind === "file" && inode.content) {
      await staged(
        path,
        pipeline(inode.content.open(), hashing(hash), createWriteStream(host, { mode: 0o600 })),
      );
      blocks4k += Math.ceil(inode.content.size / 4096);
    } else {
      await staged(path, writeFile(host, "", { mode: 0o600 }));
    }
    if (inode.kind === "symlink") await lutimes(host, mtime, mtime);
    else if (inode.kind !== "dir") await utimes(host, mtime, mtime);
    owners.push({ host, inode });
  }
  // Directory mtimes last, children first: creating an entry touches its parent.
  for (const d of dirs.reverse()) await utimes(d.path, d.mtime, d.mtime);
  // Inode numbers and link counts once every link exists.
  for (const { host, inode } of owners) {
    const st = await lstat(host, { bigint: true });
    const mode = inodeMode(inode);
    const rdev =
      inode.kind === "char" || inode.kind === "block"
        ? makedev(inode.rdevMajor ?? 0, inode.rdevMinor ?? 0)
        : 0n;
    state.push(
      `dev=${st.dev.toString(16)},ino=${st.ino},mode=${mode.toString(8)},uid=${inode.uid},gid=${inode.gid},nlink=${st.nlink},rdev=${rdev}`,
    );
  }
  const fakerootState = join(dir, "fakeroot.state");
  await writeFile(fakerootState, `${state.join("\n")}\n`);
  let xattrDump: string | undefined;
  if (dump.length) {
    xattrDump = join(dir, "xattrs.dump");
    await writeFile(xattrDump, Buffer.concat(dump));
  }
  return {
    root,
    fakerootState,
    ...(xattrDump ? { xattrDump } : {}),
    digest: hash.digest(),
    blocks4k,
    inodes,
    dirs: dirs.length,
  };
}

const NL = Buffer.from("\n");

/**
 * getfattr's quoting, which `setfattr --restore` undoes: a backslash and every byte outside
 * printable ASCII as \ooo (and the bytes in `also`: "=" ends an attribute's name), so no
 * name can start a line of its own or move an attribute to another file.
 */
function dumpQuote(bytes: Buffer, also = ""): Buffer {
  const special = Buffer.from(`\\${also}`);
  let out = "";
  for (const b of bytes)
    out +=
      b > 0x20 && b < 0x7f && !special.includes(b)
        ? String.fromCharCode(b)
        : `\\${b.toString(8).padStart(3, "0")}`;
  return Buffer.from(out, "latin1");
}

/**
 * One staging step of image path `path`. tree/names.ts lets through only what Linux holds,
 * so a failure here is the host's own limit (a long TMPDIR before a 4095-byte path): it
 * names the entry in one line instead of a raw errno with a host path.
 */
function staged<T>(path: string, step: Promise<T>): Promise<T> {
  return step.catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENAMETOOLONG")
      throw new UserError(`${displayName(`/${path}`)}: cannot be staged on this host (${err.code})`);
    throw err;
  });
}

/**
 * [command, ...args] of a mkfs tool run in the fakeroot session that gives it the staged
 * tree's owners, modes, devices and (set first, by setfattr inside the same session, where
 * fakeroot keeps them) xattrs.
 */
export function underFakeroot(s: Staged, tool: string, args: readonly string[]): [string, string[]] {
  if (!s.xattrDump) return ["fakeroot", ["-i", s.fakerootState, "--", tool, ...args]];
  const script = 'cd "$1" && setfattr -h --restore="$2" && cd / && shift 2 && exec "$@"';
  return [
    "fakeroot",
    ["-i", s.fakerootState, "--", "sh", "-c", script, "sh", s.root, s.xattrDump, tool, ...args],
  ];
}

function hashing(hash: Hash): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
}

/** A UUID string made from 16 bytes of `digest` starting at `offset` (RFC 4122 v4 bits set). */
export function uuidFrom(digest: Buffer, offset = 0): string {
  const b = Buffer.from(digest.subarray(offset, offset + 16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
