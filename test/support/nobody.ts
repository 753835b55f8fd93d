import { spawnSync } from "node:child_process";
import { chownSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { REPO } from "./cli.js";

/** The unprivileged user tests build as (nobody). */
export const NOBODY = 65534;
const MAIN = join(REPO, "src", "cli", "main.ts");

/**
 * The slimroot CLI as uid/gid 65534 with no groups, the way a user without root runs it.
 * `home` (owned by that user) is its HOME, and `home/tmp` its TMPDIR.
 */
export function cliAsNobody(args: string[], home: string, env: Record<string, string> = {}) {
  const r = spawnSync(
    "setpriv",
    [
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      "--clear-groups",
      "--",
      process.execPath,
      "--import",
      "tsx",
      MAIN,
      ...args,
    ],
    {
      cwd: REPO,
      env: { ...process.env, HOME: home, TMPDIR: join(home, "tmp"), ...env },
      encoding: "utf8",
      timeout: 600_000,
    },
  );
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A directory the unprivileged user owns; `home`: with a tmp/ for cliAsNobody. */
export function nobodyDir(path: string, home = false): string {
  mkdirSync(path, { recursive: true });
  chownSync(path, NOBODY, NOBODY);
  if (home) nobodyDir(join(path, "tmp"));
  return path;
}
