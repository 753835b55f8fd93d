/** Load order and dependency closure of kernel modules, from their `depends=` lists. */

export interface ModuleDeps {
  name: string;
  depends: readonly string[];
}

export class ModuleCycleError extends Error {}

/**
 * `modules` ordered so every module comes after the modules it depends on. Dependencies that
 * are not in the list are ignored (built into the kernel, or the caller's problem). Ties are
 * broken by name, so the order never depends on the input order. A cycle, which the kernel
 * could never load, is an error naming it.
 */
export function loadOrder<T extends ModuleDeps>(modules: readonly T[]): T[] {
  const byName = new Map<string, T>();
  for (const m of modules) byName.set(m.name, m);
  const state = new Map<string, "visiting" | "done">();
  const out: T[] = [];
  const visit = (m: T, path: string[]): void => {
    const s = state.get(m.name);
    if (s === "done") return;
    if (s === "visiting") {
      const cycle = [...path.slice(path.indexOf(m.name)), m.name];
      throw new ModuleCycleError(`module dependency cycle: ${cycle.join(" -> ")}`);
    }
    state.set(m.name, "visiting");
    for (const dep of [...m.depends].sort()) {
      const d = byName.get(dep);
      if (d) visit(d, [...path, m.name]);
    }
    state.set(m.name, "done");
    out.push(m);
  };
  for (const name of [...byName.keys()].sort()) visit(byName.get(name)!, []);
  return out;
}

/**
 * The names in `wanted` plus everything they depend on, transitively, looked up with `deps`
 * (which returns undefined for a module that is not available). Missing names are reported
 * rather than thrown, since an optional driver may simply not exist in a given kernel.
 */
export async function dependencyClosure(
  wanted: readonly string[],
  deps: (name: string) => readonly string[] | undefined | Promise<readonly string[] | undefined>,
): Promise<{ names: string[]; missing: string[] }> {
  const seen = new Set<string>();
  const missing: string[] = [];
  const stack = [...wanted];
  while (stack.length) {
    const name = stack.pop()!;
    if (seen.has(name) || missing.includes(name)) continue;
    const d = await deps(name);
    if (!d) {
      missing.push(name);
      continue;
    }
    seen.add(name);
    stack.push(...d);
  }
  return { names: [...seen].sort(), missing: missing.sort() };
}
