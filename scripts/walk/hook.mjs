// Loader hook for scripts/walk.ts: every module of src/ has its exported functions wrapped so
// that a call from outside the module (the only way to reach the wrapper) is recorded as a step.
// Calls inside a module go to the function itself and are not steps.
import { fileURLToPath } from "node:url";

const SRC = new URL("../../src/", import.meta.url).href;

export async function load(url, context, nextLoad) {
  const result = await nextLoad(url, context);
  if (!url.startsWith(SRC) || !url.endsWith(".ts") || url.endsWith(".test.ts") || result.format !== "module")
    return result;
  const module = fileURLToPath(url).slice(fileURLToPath(SRC).length);
  let n = 0;
  const wraps = [];
  // tsx (esbuild) ends a module with `export{local as name,...}`: export a wrapper of each instead.
  const source = String(result.source).replace(/export\s*\{([^}]*)\}(?!\s*from)/g, (_, list) => {
    const names = list
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean)
      .map((s) => {
        const [local, exported = local] = s.split(/\s+as\s+/);
        const w = `__walk_${n++}`;
        wraps.push(
          `const ${w}=globalThis.__walkWrap(${JSON.stringify(module)},${JSON.stringify(exported)},${local});`,
        );
        return `${w} as ${exported}`;
      });
    return `export{${names.join(",")}}`;
  });
  return { ...result, source: `${source}\n${wraps.join("\n")}\n` };
}
