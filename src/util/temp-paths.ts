import { rmSync } from "node:fs";

/**
 * Temp files and directories alive right now. A signal ends the process without running
 * `finally` blocks, so the CLI's signal handler removes these synchronously instead.
 */
const live = new Set<string>();

export function trackTempPath(path: string): void {
  live.add(path);
}

export function untrackTempPath(path: string): void {
  live.delete(path);
}

export function removeTempPathsSync(): void {
  for (const p of live) rmSync(p, { recursive: true, force: true });
  live.clear();
}
