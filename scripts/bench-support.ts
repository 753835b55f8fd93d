// What the benchmark scripts share: the CLI to run, and booting nginx until it serves.
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../src/util/net.js";
import { REPO } from "../test/support/cli.js";

// The installed form when it is built with trace (dist/), else the sources through tsx.
export const cli = existsSync(join(REPO, "dist", "cli", "trace.js"))
  ? [join(REPO, "dist", "cli", "main.js")]
  : ["--import", "tsx", join(REPO, "src", "cli", "main.ts")];

/** Runs slimroot to the end; throws with its stderr when it fails. Returns its stdout. */
export function slimroot(argv: string[]): string {
  const r = spawnSync(process.execPath, [...cli, ...argv], { cwd: REPO, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`slimroot ${argv.join(" ")}: ${r.stderr.trim()}`);
  return r.stdout;
}

export function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/**
 * Boots `slimroot run ARGS -p PORT:80` and polls nginx's page; stops the VM. Returns the
 * seconds from starting `slimroot run` to the first HTTP 200 with the welcome page, or
 * undefined when it never came within `waitMs`.
 */
export async function timeToServe(args: string[], waitMs = 45_000): Promise<number | undefined> {
  const port = await freePort();
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, [...cli, "run", ...args, "-p", `${port}:80`], {
    cwd: REPO,
    stdio: ["ignore", "ignore", "ignore"],
  });
  const exited = new Promise<void>((r) => child.on("close", () => r()));
  let took: number | undefined;
  const deadline = Date.now() + waitMs;
  while (took === undefined && Date.now() < deadline && child.exitCode === null) {
    try {
      // Short: QEMU accepts the connection before the guest listens, and a request then hangs;
      // a long per-request timeout would be measured instead of the boot.
      const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(500) });
      if (res.status === 200 && (await res.text()).includes("Welcome to nginx"))
        took = Number(process.hrtime.bigint() - started) / 1e9;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  child.kill("SIGTERM");
  const kill = setTimeout(() => child.kill("SIGKILL"), 20_000);
  await exited;
  clearTimeout(kill);
  return took;
}

/** Least `--mem` in [lo, hi] MiB at which `args` still serves the page, bisected. */
export async function leastRam(args: string[], lo: number, hi: number): Promise<number> {
  const serves = async (mem: number) => (await timeToServe([...args, "--mem", String(mem)])) !== undefined;
  if (!(await serves(hi))) throw new Error(`${args.join(" ")} does not serve even with ${hi} MiB`);
  if (await serves(lo)) return lo;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await serves(mid)) hi = mid;
    else lo = mid;
  }
  return hi;
}
