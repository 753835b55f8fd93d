#!/usr/bin/env node
// The built CLI's entry (dist/cli/main.js, made by scripts/bundle-cli.ts): runs the CLI, one
// CommonJS script beside it (slimroot.cjs, main.ts and what it imports), from V8's code cache
// in slimroot's cache (util/code-cache.ts): a start then reads the compiled code instead of
// parsing 1 MB of JavaScript and compiling every function a command calls.
// SLIMROOT_NO_CODE_CACHE=1 runs without reading or writing one.
import { join } from "node:path";
import { cacheRoot } from "../util/cache-dir.js";
import { runCached } from "../util/code-cache.js";
import { COMMAND_NAMES } from "./commands.js";

const asked = process.argv[2] ?? "";
// One cache per command, and per dry run: a cache holds what its first run compiled, and a
// dry run never calls the code that starts and watches a VM.
const label = (COMMAND_NAMES as readonly string[]).includes(asked)
  ? `${asked}${process.argv.includes("--dry-run") ? "-dry" : ""}`
  : "cli";

/** The cache's directory; none when caching is off or there is no home to keep it in. */
function cacheDir(): string | undefined {
  if (process.env.SLIMROOT_NO_CODE_CACHE) return undefined;
  try {
    return join(cacheRoot(), "cli-code");
  } catch {
    return undefined;
  }
}

// CommonJS: the bundle is beside this file (import.meta is ESM's).
runCached(join(__dirname, "slimroot.cjs"), cacheDir(), label);
