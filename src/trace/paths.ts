/**
 * From what the guest opened to image paths: the API filesystems the init puts over the
 * image are not the image, nor are slimroot's own files. /tmp and /run are the image's where
 * it ships content (SCRATCH_DIRS): what the app opened there and the image has is kept.
 */
import { API_MOUNTS } from "../guest/layout.js";

/** An image path (no leading "/") for a guest path, or undefined when it is not the image's. */
export function imagePathOf(guestPath: string): string | undefined {
  const parts = guestPath.split("/").filter((s) => s !== "" && s !== ".");
  if (parts.length === 0 || parts.includes("..")) return undefined;
  if (API_MOUNTS.has(parts[0]!)) return undefined;
  const path = parts.join("/");
  if (path === "init" || path === "etc/slimroot" || path.startsWith("etc/slimroot/")) return undefined;
  return path;
}

/**
 * The image paths of a trace, deduplicated, keeping only those the image has (files the
 * app created at run time are not in it). Returns them sorted, with how many were dropped.
 */
export function profilePaths(
  traced: readonly string[],
  inImage: (path: string) => boolean,
): { paths: string[]; created: string[] } {
  const paths = new Set<string>();
  const created: string[] = [];
  for (const t of traced) {
    const p = imagePathOf(t);
    if (p === undefined) continue;
    if (inImage(p)) paths.add(p);
    else created.push(p);
  }
  return { paths: [...paths].sort(), created };
}
