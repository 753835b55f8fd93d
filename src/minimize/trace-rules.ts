import { GUEST_MOUNTS } from "../guest/layout.js";
import { resolvePath, treeFs } from "../tree/image-fs.js";
import { parentOf } from "../tree/path.js";
import type { RuleContext } from "./rules.js";
import type { Selection } from "./selection.js";

/**
 * What a runtime reads without the trace seeing it: when a traced path matches `when`, each
 * path `implies` names is kept too, if the image has it as that kind (a file with its ELF
 * closure, a directory as it is). Rules run in this order, each over every traced path; a
 * path keeps the first reason it was kept for. A new runtime is a few rows here.
 */
export interface RuntimeRule {
  runtime: string;
  when: RegExp;
  implies(m: RegExpExecArray, traced: string): { path: string; kind: "file" | "dir"; why: string }[];
}

const under = (dir: string | undefined, name: string) => (dir ? `${dir}/${name}` : name);

export const RUNTIME_RULES: readonly RuntimeRule[] = [
  {
    // Python reads a module's cached bytecode and only stat()s its source to check it is
    // fresh, and its importer finds modules by the source's name:
    // `dir/__pycache__/name.cpython-311[.opt-1].pyc` -> `dir/name.py`.
    runtime: "python",
    when: /^(?:(.*)\/)?__pycache__\/([^/.]+)\.[^/]+\.pyc$/,
    implies: (m, traced) => [
      {
        path: under(m[1], `${m[2]}.py`),
        kind: "file",
        why: `source of traced /${traced} (Python stat()s it)`,
      },
    ],
  },
  {
    // Startup looks for landmarks in the standard library directory holding a traced path;
    // os is frozen into the interpreter, so never opened, yet os.py is the landmark.
    runtime: "python",
    when: /^((?:.*\/)?lib\/python3\.\d+)\//,
    implies: (m) => [
      { path: `${m[1]}/os.py`, kind: "file", why: "Python's landmark for its prefix (stat()ed at startup)" },
      {
        path: `${m[1]}/lib-dynload`,
        kind: "dir",
        why: "Python's landmark for its exec prefix (stat()ed at startup)",
      },
    ],
  },
];

/**
 * What a trace implies beyond the files it saw.
 *
 * A profile from fanotify alone (opens only) misses what was looked up without an open, so:
 *
 * - a symlink the app went through (a PATH entry, /etc/alternatives, sites-enabled/x, a
 *   library's soname link, /bin -> usr/bin) left no event: every symlink of the image that
 *   leads to a traced path or to a directory above one is kept, with the links on its way;
 * - runtimes read files the trace does not see (RUNTIME_RULES: Python's sources of
 *   traced .pyc files and its startup landmarks).
 *
 * With the syscall recorder (`lookups`: init/record.c) both are retired: the path as the app
 * named it was recorded and resolved in the image with its links (src/trace/paths.ts), and
 * Python's stat() of a source or a landmark is a lookup like any other. What stays either
 * way: every symlink into the filesystems the init mounts (/dev, /proc, /tmp, ...), which
 * costs nothing and covers a log linked to /dev/stdout that only an error path opens, and
 * (minimize.ts) the ELF closure of every traced file, whose libraries the program needs on
 * paths the probes did not take.
 */
export async function applyTraceRules(
  ctx: RuleContext,
  sel: Selection,
  traced: ReadonlySet<string>,
  lookups: boolean,
): Promise<void> {
  const fs = treeFs(ctx.tree);
  // A link to a directory holding traced files (/bin -> usr/bin) may be how they were reached.
  const holders = new Set<string>();
  for (const p of traced)
    for (let d = parentOf(p); d !== "" && !holders.has(d); d = parentOf(d)) holders.add(d);
  for (const { path, inode } of [...ctx.tree.walk()]) {
    if (inode.kind !== "symlink") continue;
    const to = resolvePath(fs, `/${path}`)?.path.slice(1);
    if (!lookups && to !== undefined && to !== path && traced.has(to))
      await ctx.keepWithClosure(path, `trace: symlink to traced /${to}`);
    else if (!lookups && to !== undefined && to !== path && holders.has(to))
      await ctx.keepWithClosure(path, `trace: symlink to /${to}, which holds traced files`);
    else {
      const into = (to ?? (inode.target?.startsWith("/") ? inode.target.slice(1) : "")).split("/")[0]!;
      // Its target is not in the image: nothing to follow.
      if (GUEST_MOUNTS.has(into)) sel.add(path, `trace: symlink into /${into} (not traced there)`);
    }
  }
  for (const rule of lookups ? [] : RUNTIME_RULES) {
    const done = new Set<string>();
    for (const p of traced) {
      const m = rule.when.exec(p);
      if (!m) continue;
      for (const { path, kind, why } of rule.implies(m, p)) {
        if (done.has(path) || ctx.tree.get(path)?.inode.kind !== kind) continue;
        done.add(path);
        if (kind === "file") await ctx.keepWithClosure(path, `trace: ${why}`);
        else sel.add(path, `trace: ${why}`);
      }
    }
  }
}
