import { nameBytes } from "../util/name-bytes.js";

/**
 * Paths inside an image are kept relative to its root, without leading "/" or "./",
 * e.g. "usr/bin/env"; the root itself is "".
 */

/** Thrown for a path that would leave the image root; callers add the layer name. */
export class EscapeError extends Error {}

/**
 * Normalises an archive member name or link target against the image root: drops "/" and
 * "./" prefixes and "." segments, resolves ".." lexically, and refuses a ".." that climbs
 * above the root (a container runtime would clamp it; we would rather say so).
 */
export function normalizeImagePath(name: string): string {
  const out: string[] = [];
  for (const seg of name.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (out.length === 0) throw new EscapeError(`"${name}" escapes the image root`);
      out.pop();
    } else out.push(seg);
  }
  return out.join("/");
}

export function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i);
}

export function baseOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

export function joinImagePath(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}

export { displayName, nameBytes, nameFromBytes } from "../util/name-bytes.js";

/**
 * The host path of image path `path` under host directory `dir`, as bytes: the one way an
 * image name becomes a host path. A string host path would be encoded as UTF-8 by Node, which
 * turns every byte that is not UTF-8 into U+FFFD, so `caf\xe8` and `caf\xe9` would be one file.
 */
export function hostPath(dir: string | Buffer, path: string): Buffer {
  const base = typeof dir === "string" ? Buffer.from(dir) : dir;
  return path === "" ? base : Buffer.concat([base, Buffer.from("/"), nameBytes(path)]);
}
