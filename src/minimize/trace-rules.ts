import { resolvePath, treeFs } from "../tree/image-fs.js";
import { parentOf } from "../tree/path.js";
import type { RuleContext } from "./rules.js";
import type { Selection } from "./selection.js";

/** What the init mounts over the image: opens there are not traced (access.log -> /dev/stdout). */
const MOUNTED = new Set(["dev", "proc", "sys", "run", "tmp"]);

/** `dir/__pycache__/name.cpython-311[.opt-1].pyc` -> `dir/name.py`. */
const PYC = /^(?:(.*)\/)?__pycache__\/([^/.]+)\.[^/]+\.pyc$/;
/** A Python standard library directory holding a traced path. */
const STDLIB = /^((?:.*\/)?lib\/python3\.\d+)\//;

/**
 * What a trace implies beyond the files it saw. fanotify reports opens only, so:
 *
 * - a symlink the app went through (a PATH entry, /etc/alternatives, sites-enabled/x, a
 *   library's soname link, /bin -> usr/bin) left no event: every symlink of the image that
 *   leads to a traced path or to a directory above one is kept, with the links on its way,
 *   and so is every symlink into the filesystems
 *   the init mounts (/dev, /proc, ...), which are not traced (a log linked to /dev/stdout);
 * - Python reads a module's cached bytecode and only stat()s its source to check it is
 *   fresh, and its importer finds modules by the source's name: the .py of every traced
 *   .pyc is kept, and so are the landmarks its startup looks for (lib/python3.N/os.py,
 *   lib-dynload).
 *
 * Libraries come with their ELF closure (keepWithClosure) whether or not they were traced.
 */
export async function applyTraceRules(
  ctx: RuleContext,
  sel: Selection,
  traced: ReadonlySet<string>,
): Promise<void> {
  const fs = treeFs(ctx.tree);
  // A link to a directory holding traced files (/bin -> usr/bin) may be how they were reached.
  const holders = new Set<string>();
  for (const p of traced)
    for (let d = parentOf(p); d !== "" && !holders.has(d); d = parentOf(d)) holders.add(d);
  for (const { path, inode } of [...ctx.tree.walk()]) {
    if (inode.kind !== "symlink") continue;
    const to = resolvePath(fs, `/${path}`)?.path.slice(1);
    if (to !== undefined && to !== path && traced.has(to))
      await ctx.keepWithClosure(path, `trace: symlink to traced /${to}`);
    else if (to !== undefined && to !== path && holders.has(to))
      await ctx.keepWithClosure(path, `trace: symlink to /${to}, which holds traced files`);
    else {
      const into = (to ?? (inode.target?.startsWith("/") ? inode.target.slice(1) : "")).split("/")[0]!;
      // Its target is not in the image: nothing to follow.
      if (MOUNTED.has(into)) sel.add(path, `trace: symlink into /${into} (not traced there)`);
    }
  }
  const stdlibs = new Set<string>();
  for (const p of traced) {
    const lib = STDLIB.exec(p)?.[1];
    if (lib) stdlibs.add(lib);
    const m = PYC.exec(p);
    if (!m) continue;
    const source = `${m[1] ? `${m[1]}/` : ""}${m[2]}.py`;
    if (ctx.tree.get(source)?.inode.kind === "file")
      await ctx.keepWithClosure(source, `trace: source of traced /${p} (Python stat()s it)`);
  }
  for (const lib of stdlibs) {
    // os is frozen into the interpreter, so never opened, yet os.py is the landmark
    if (ctx.tree.get(`${lib}/os.py`)?.inode.kind === "file")
      await ctx.keepWithClosure(
        `${lib}/os.py`,
        "trace: Python's landmark for its prefix (stat()ed at startup)",
      );
    if (ctx.tree.get(`${lib}/lib-dynload`)?.inode.kind === "dir")
      sel.add(`${lib}/lib-dynload`, "trace: Python's landmark for its exec prefix (stat()ed at startup)");
  }
}
