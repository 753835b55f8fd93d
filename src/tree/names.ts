/**
 * What an output format can hold of names, symlink targets and extended attributes, and the
 * one check of a finished tree against it. Each format states its row (pipeline/formats.ts);
 * the build runs checkNames before its writer writes a byte, so every format refuses the same
 * way: one line naming the entry, and only what that format truly cannot hold. Everything
 * else is kept byte for byte (names are bytes: see path.ts).
 */
import { UserError } from "../util/errors.js";
import { displayName, nameBytes } from "./path.js";
import type { Tree } from "./tree.js";

/** Linux's limits (linux/limits.h): a directory entry, a path or symlink target with its NUL, xattrs. */
export const NAME_MAX = 255;
export const PATH_MAX = 4096;
export const XATTR_NAME_MAX = 255;
export const XATTR_SIZE_MAX = 65536;
/** The kernel's dev_t (linux/kdev_t.h): a 12-bit major, a 20-bit minor. */
export const DEV_MAJOR_MAX = 0xfff;
export const DEV_MINOR_MAX = 0xfffff;

/** The xattr namespaces Linux filesystems store (system.* only as POSIX ACLs). */
export const LINUX_XATTR_NAMESPACES = [
  "user.",
  "trusted.",
  "security.",
  "system.posix_acl_access",
  "system.posix_acl_default",
] as const;

export interface NameRules {
  /** The format's name in messages. */
  format: string;
  /** Longest name in a directory entry, when the format's tool holds less than NAME_MAX. */
  maxNameBytes?: number;
  /** Characters no name or symlink target may hold in this format, and why, for the message. */
  forbidden?: { pattern: RegExp; why: string };
  /** Extended attributes the format stores; absent: it stores none (the writer warns they go). */
  xattrs?: {
    /** Name prefixes it stores (a prefix ending in "." is a namespace, else an exact name). */
    namespaces: readonly string[];
    /** Largest name + NUL + value of one attribute, when smaller than Linux's own limits. */
    maxEntryBytes?: number;
    /** Largest sum over one inode's attributes of `entryBytes` (ext4: one block), if bounded. */
    maxInodeBytes?: { bytes: number; entryBytes: (name: Buffer, value: Buffer) => number };
  };
}

/**
 * Throws one UserError naming the first entry (in walk order) that `rules.format` cannot
 * hold. Linux's own limits hold for every format: a name of at most NAME_MAX bytes, a
 * path and a symlink target of at most PATH_MAX - 1 bytes, a symlink target not empty, a
 * device number the kernel's dev_t holds.
 */
export function checkNames(tree: Tree, rules: NameRules): void {
  const maxName = rules.maxNameBytes ?? NAME_MAX;
  const forbidden = rules.forbidden;
  for (const { path, inode } of tree.walk()) {
    const fail = (what: string) =>
      new UserError(`${displayName(`/${path}`)}: ${rules.format} cannot hold ${what}`);
    // byteLength never undercounts (a byte held as a surrogate counts 3): short paths are done.
    if (path.length * 3 > maxName && Buffer.byteLength(path) > maxName)
      checkLengths(nameBytes(path), maxName, fail);
    if (forbidden?.pattern.test(path)) throw fail(`this name (${forbidden.why})`);
    if (inode.kind === "symlink") {
      const target = nameBytes(inode.target ?? "");
      if (target.length === 0) throw fail("a symlink with an empty target (Linux has none)");
      if (target.length > PATH_MAX - 1)
        throw fail(`a symlink target of ${target.length} bytes (Linux: at most ${PATH_MAX - 1})`);
      if (forbidden?.pattern.test(inode.target ?? "")) throw fail(`this symlink target (${forbidden.why})`);
    }
    if (inode.kind === "char" || inode.kind === "block") {
      const [major, minor] = [inode.rdevMajor ?? 0, inode.rdevMinor ?? 0];
      if (major > DEV_MAJOR_MAX || minor > DEV_MINOR_MAX)
        throw fail(
          `device ${major}:${minor} (Linux: major at most ${DEV_MAJOR_MAX}, minor at most ${DEV_MINOR_MAX})`,
        );
    }
    if (rules.xattrs && inode.xattrs?.size) checkXattrs(inode.xattrs, rules.xattrs, fail);
  }
}

function checkLengths(bytes: Buffer, maxName: number, fail: (what: string) => UserError): void {
  if (bytes.length > PATH_MAX - 1)
    throw fail(`a path of ${bytes.length} bytes (Linux: at most ${PATH_MAX - 1})`);
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i < bytes.length && bytes[i] !== 0x2f) continue;
    if (i - start > maxName)
      throw fail(`a name of ${i - start} bytes (a directory entry holds at most ${maxName})`);
    start = i + 1;
  }
}

function checkXattrs(
  xattrs: ReadonlyMap<string, Buffer>,
  rules: NonNullable<NameRules["xattrs"]>,
  fail: (what: string) => UserError,
): void {
  let inodeBytes = 0;
  for (const [name, value] of xattrs) {
    const raw = nameBytes(name);
    const shown = displayName(name);
    const prefix = rules.namespaces.find((p) => (p.endsWith(".") ? name.startsWith(p) : name === p));
    if (!prefix || (prefix.endsWith(".") && name.length === prefix.length))
      throw fail(`the extended attribute ${shown} (it stores ${rules.namespaces.join(", ")})`);
    if (raw.length > XATTR_NAME_MAX)
      throw fail(`an extended attribute name of ${raw.length} bytes (Linux: at most ${XATTR_NAME_MAX})`);
    if (value.length > XATTR_SIZE_MAX)
      throw fail(`a ${value.length}-byte value of ${shown} (Linux: at most ${XATTR_SIZE_MAX})`);
    const entry = raw.length + 1 + value.length;
    if (rules.maxEntryBytes !== undefined && entry > rules.maxEntryBytes)
      throw fail(
        `the ${value.length}-byte value of ${shown} (at most ${rules.maxEntryBytes} bytes with its name)`,
      );
    if (rules.maxInodeBytes) inodeBytes += rules.maxInodeBytes.entryBytes(raw, value);
  }
  if (rules.maxInodeBytes && inodeBytes > rules.maxInodeBytes.bytes)
    throw fail(
      `extended attributes of ${inodeBytes} bytes on one file (at most ${rules.maxInodeBytes.bytes})`,
    );
}
