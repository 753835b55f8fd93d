import { homedir } from "node:os";
import { join } from "node:path";

/**
 * slimroot's one cache root, for everything it keeps between runs (fetched kernels, registry
 * blobs, test fixtures): $SLIMROOT_CACHE, else $XDG_CACHE_HOME/slimroot, else ~/.cache/slimroot.
 */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SLIMROOT_CACHE) return env.SLIMROOT_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "slimroot");
}
