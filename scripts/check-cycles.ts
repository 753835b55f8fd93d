/**
 * Fails when the import graph of src/ has a cycle (type-only imports and lazy import()s
 * included: a cycle of types is still two modules that cannot be read apart). Prints each
 * cycle as a path of files. Run by `make test`: node --import tsx scripts/check-cycles.ts
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "src");

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? files(join(dir, e.name))
      : e.name.endsWith(".ts") && !e.name.endsWith(".test.ts")
        ? [join(dir, e.name)]
        : [],
  );
}

/** Relative specifiers of `import ... from`, `export ... from`, `import "x"` and `import("x")`. */
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(?\s*)["'](\.{1,2}\/[^"']+)["']/g;

const graph = new Map<string, string[]>();
for (const file of files(src)) {
  const text = readFileSync(file, "utf8");
  const deps = new Set<string>();
  for (const m of text.matchAll(SPECIFIER)) deps.add(resolve(dirname(file), m[1]!.replace(/\.js$/, ".ts")));
  graph.set(file, [...deps]);
}

// Tarjan's strongly connected components; a component of two or more files is a cycle.
let index = 0;
const idx = new Map<string, number>();
const low = new Map<string, number>();
const stack: string[] = [];
const onStack = new Set<string>();
const cycles: string[][] = [];
function visit(v: string): void {
  idx.set(v, index);
  low.set(v, index++);
  stack.push(v);
  onStack.add(v);
  for (const w of graph.get(v) ?? []) {
    if (!graph.has(w)) continue;
    if (!idx.has(w)) {
      visit(w);
      low.set(v, Math.min(low.get(v)!, low.get(w)!));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
  }
  if (low.get(v) === idx.get(v)) {
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(scc);
  }
}
for (const v of [...graph.keys()].sort()) if (!idx.has(v)) visit(v);

/** One cycle through `members`, as a readable path. */
function cyclePath(members: string[]): string[] {
  const inScc = new Set(members);
  const start = members.sort()[0]!;
  const prev = new Map<string, string>();
  const queue = [start];
  while (queue.length) {
    const v = queue.shift()!;
    for (const w of graph.get(v) ?? []) {
      if (!inScc.has(w)) continue;
      if (w === start) {
        const path = [v];
        for (let p = v; p !== start; p = prev.get(p)!) path.unshift(prev.get(p)!);
        return [...path, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return members;
}

const rel = (f: string) => relative(root, f);
if (cycles.length) {
  for (const c of cycles) process.stderr.write(`import cycle: ${cyclePath(c).map(rel).join(" -> ")}\n`);
  process.exit(1);
}
process.stdout.write(`no import cycles in ${graph.size} modules of src/\n`);
