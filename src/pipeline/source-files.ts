import type { Platform } from "../image/types.js";
import type { Inode } from "../tree/tree.js";
import { loadImage } from "./build.js";

/**
 * The regular files of a source image (flattened, as build sees it), each hard link once:
 * what `inspect --html --against` compares an image with.
 */
export async function sourceFiles(
  source: string,
  o: { platform?: Platform; insecure?: boolean } = {},
): Promise<{ path: string; size: number }[]> {
  // Only the files matter here: a stand-in command keeps an image without Entrypoint or Cmd
  // (a plain rootfs) from being refused for lacking one.
  const image = await loadImage({ source, overrides: { entrypoint: "/" }, additions: [], ...o });
  try {
    const seen = new Set<Inode>();
    const out: { path: string; size: number }[] = [];
    for (const { path, inode } of image.tree.walk()) {
      if (inode.kind !== "file" || seen.has(inode)) continue;
      seen.add(inode);
      out.push({ path, size: inode.content?.size ?? 0 });
    }
    return out;
  } finally {
    await image.spool.dispose();
  }
}
