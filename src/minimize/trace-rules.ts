import { resolvePath, treeFs } from "../tree/image-fs.js";
import type { RuleContext } from "./rules.js";
import type { Selection } from "./selection.js";

/** What the init mounts over the image: opens there are not traced (access.log -> /dev/stdout). */
const MOUNTED = new Set(["dev", "proc", "sys", "run", "tmp"]);

/** `dir/__pycache__/name.cpython-311[.opt-1].pyc` -> `dir/name.py`. */
const PYC = /^(?:(.*)\/)?__pycache__\/([^/.]+)\.[^/]+\.pyc$/;

/**
 * What a trace implies beyond the files it saw. fanotify reports opens only, so:
 *
 * - a symlink the app went through (a PATH entry, /etc/alternatives, sites-enabled/x, a
 *   library's soname link) left no event: every symlink of the image that leads to a traced
 *   path is kept, with the links on its way, and so is every symlink into the filesystems
 *   the init mounts (/dev, /proc, ...), which are not traced (a log linked to /dev/stdout);
 * - Python reads a module's cached bytecode and only stat()s its source to check it is
 *   fresh, and its importer finds modules by the source's name: the .py of every traced
 *   .pyc is kept.
 *
 * Libraries come with their ELF closure (keepWithClosure) whether or not they were traced.
 */
export async function applyTraceRules(
  ctx: RuleContext,
  sel: Selection,
  traced: ReadonlySet<string>,
): Promise<void> {
  const fs = treeFs(ctx.tree);
  for (const { path, inode } of [...ctx.tree.walk()]) {
    if (inode.kind !== "symlink") continue;
    const to = resolvePath(fs, `/${path}`)?.path.slice(1);
    if (to !== undefined && to !== path && traced.has(to))
      await ctx.keepWithClosure(path, `trace: symlink to traced /${to}`);
    else {
      const into = (to ?? (inode.target?.startsWith("/") ? inode.target.slice(1) : "")).split("/")[0]!;
      // Its target is not in the image: nothing to follow.
      if (MOUNTED.has(into)) sel.add(path, `trace: symlink into /${into} (not traced there)`);
    }
  }
  for (const p of traced) {
    const m = PYC.exec(p);
    if (!m) continue;
    const source = `${m[1] ? `${m[1]}/` : ""}${m[2]}.py`;
    if (ctx.tree.get(source)?.inode.kind === "file")
      await ctx.keepWithClosure(source, `trace: source of traced /${p} (Python stat()s it)`);
  }
}
