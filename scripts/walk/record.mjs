// Preloaded by scripts/walk.ts into the walked process: the wrapper the hook's code calls, and
// the calls written to $SLIMROOT_WALK_OUT at exit, one "caller callee function" line each. The
// caller is the module whose exported function is running (through awaits and generators
// too: an AsyncLocalStorage), or cli/main.ts for the commander actions, which no export runs.
import { AsyncLocalStorage } from "node:async_hooks";
import { writeFileSync } from "node:fs";
import { register } from "node:module";

const calls = [];
const running = new AsyncLocalStorage();
globalThis.__walkWrap = (module, name, value) => {
  // Classes and non-functions are exported as they are (a class must stay constructible).
  if (typeof value !== "function" || /^class\b/.test(Function.prototype.toString.call(value))) return value;
  const wrapped = function (...args) {
    calls.push(`${running.getStore() ?? "cli/main.ts"} ${module} ${name}`);
    const result = running.run(module, () => value.apply(this, args));
    // A generator's body runs at each next(), in its caller's context: run it in the module's.
    if (
      result &&
      typeof result.next === "function" &&
      (Symbol.asyncIterator in result || Symbol.iterator in result)
    )
      for (const m of ["next", "return", "throw"]) {
        const f = result[m];
        if (typeof f === "function") result[m] = (...a) => running.run(module, () => f.apply(result, a));
      }
    return result;
  };
  Object.defineProperty(wrapped, "name", { value: name });
  return wrapped;
};
process.on("exit", () => writeFileSync(process.env.SLIMROOT_WALK_OUT, `${calls.join("\n")}\n`));
register("./hook.mjs", import.meta.url);
