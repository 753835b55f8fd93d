import { resolvePath, treeFs } from "../tree/image-fs.js";
import type { RuleContext } from "./rules.js";

/** `dir/__pycache__/name.cpython-311[.opt-1].pyc` -> `dir/name.py`. */
const PYC = /^(?:(.*)\/)?__pycache__\/([^/.]+)\.[^/]+\.pyc$/;

/**
 * What a trace implies beyond the files it saw. fanotify reports opens only, so:
 *
 * - a symlink the app went through (a PATH entry, /etc/alternatives, sites-enabled/x, a
 *   library's soname link) left no event: every symlink of the image that leads to a traced
 *   path is kept, with the links on its way;
 * - Python reads a module's cached bytecode and only stat()s its source to check it is
 *   fresh, and its importer finds modules by the source's name: the .py of every traced
 *   .pyc is kept.
 *
 * Libraries come with their ELF closure (keepWithClosure) whether or not they were traced.
 */
export async function applyTraceRules(ctx: RuleContext, traced: ReadonlySet<string>): Promise<void> {
  const fs = treeFs(ctx.tree);
  for (const { path, inode } of [...ctx.tree.walk()]) {
    if (inode.kind !== "symlink") continue;
    const to = resolvePath(fs, `/${path}`)?.path.slice(1);
    if (to !== undefined && to !== path && traced.has(to))
      await ctx.keepWithClosure(path, `trace: symlink to traced /${to}`);
  }
  for (const p of traced) {
    const m = PYC.exec(p);
    if (!m) continue;
    const source = `${m[1] ? `${m[1]}/` : ""}${m[2]}.py`;
    if (ctx.tree.get(source)?.inode.kind === "file")
      await ctx.keepWithClosure(source, `trace: source of traced /${p} (Python stat()s it)`);
  }
}
