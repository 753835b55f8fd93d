/**
 * From what the guest recorded to image paths: the API filesystems the init puts over the
 * image are not the image, nor are slimroot's own files. /tmp and /run are the image's where
 * it ships content (SCRATCH_DIRS): what the app used there and the image has is kept.
 *
 * The init's records (init/record.c, init/trace.c): `/path` opened, or named in a system call
 * and there; `? /path` named and not there; `L /dir` listed. A path is as the app named it
 * (symlinks, `..`), so it is resolved here in the image, as the kernel did in the guest: the
 * symlinks on the way are part of what the app used.
 */
import { INIT_PATH } from "../guest/init-binary.js";
import { API_MOUNTS, SLIMROOT_DIR } from "../guest/layout.js";
import { type ImageFs, resolvePath } from "../tree/image-fs.js";

/** An image path (no leading "/") for a guest path, or undefined when it is not the image's. */
export function imagePathOf(guestPath: string): string | undefined {
  const parts = guestPath.split("/").filter((s) => s !== "" && s !== ".");
  if (parts.length === 0 || parts.includes("..")) return undefined;
  if (API_MOUNTS.has(parts[0]!)) return undefined;
  const path = parts.join("/");
  if (path === INIT_PATH || path === SLIMROOT_DIR || path.startsWith(`${SLIMROOT_DIR}/`)) return undefined;
  return path;
}

/** What a trace says about the image. */
export interface TracedImagePaths {
  /** Image paths the app used that the image has: files, directories, symlinks on the way. Sorted. */
  paths: string[];
  /** Image directories the app listed. Sorted. */
  listed: string[];
  /** Guest paths the app looked up that neither the guest nor the image has. Sorted. */
  missing: string[];
  /** Image paths the app used that the image does not have (made at run time). */
  created: string[];
}

/** One record: its kind and its guest path. */
function parseRecord(record: string): { kind: "used" | "missing" | "listed"; path: string } {
  if (record.startsWith("? /")) return { kind: "missing", path: record.slice(2) };
  if (record.startsWith("L /")) return { kind: "listed", path: record.slice(2) };
  return { kind: "used", path: record };
}

/**
 * The image paths of a trace, deduplicated: each record resolved in `fs` (the whole image
 * that was traced), keeping the symlinks on the way; what the image lacks was made at run
 * time, or was looked up and not found.
 */
export function profilePaths(records: readonly string[], fs: ImageFs): TracedImagePaths {
  const paths = new Set<string>();
  const listed = new Set<string>();
  const missing = new Set<string>();
  const created = new Set<string>();
  for (const record of records) {
    const { kind, path: named } = parseRecord(record);
    const path = named.replace(/(.)\/+$/, "$1"); // mkdir("/var/x/")
    const r = resolvePath(fs, path, { partial: true });
    const image = r && imagePathOf(r.path);
    const there = image !== undefined && fs.lstat(r!.path) !== undefined;
    // The links the app went through: needed wherever they lead (into /dev, or to a file made
    // at run time under a linked /var/run), unless the lookup failed in the image itself.
    if (r && (there || kind === "used"))
      for (const link of r.links) {
        const l = imagePathOf(link);
        if (l !== undefined) paths.add(l);
      }
    if (there) {
      paths.add(image);
      if (kind === "listed" && fs.lstat(r!.path)?.kind === "dir") listed.add(image);
    } else if (kind === "missing" && image !== undefined) {
      missing.add(path);
    } else if (kind === "used" && image !== undefined) created.add(image);
  }
  const sorted = (s: Set<string>) => [...s].sort();
  return { paths: sorted(paths), listed: sorted(listed), missing: sorted(missing), created: sorted(created) };
}
