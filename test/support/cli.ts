import { type ChildProcess, spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const MAIN = join(REPO, "src", "cli", "main.ts");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A CLI process left running: its output so far, and its exit status when it ends. */
export interface RunningCli {
  child: ChildProcess;
  readonly stdout: string;
  readonly stderr: string;
  exited: Promise<number>;
}

/** Where the CLI runs (default: the repository) and how long it may take before it is killed. */
export interface CliOptions {
  cwd?: string;
  timeoutMs?: number;
}

/** Starts the slimroot CLI from source, as a user would run the command, without waiting. */
export function startCli(args: string[], env: Record<string, string> = {}, o: CliOptions = {}): RunningCli {
  // tsx by its full URL: `--import` is resolved from the working directory.
  const child = spawn(process.execPath, ["--import", import.meta.resolve("tsx"), MAIN, ...args], {
    cwd: o.cwd ?? REPO,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out = { stdout: "", stderr: "" };
  child.stdout!.on("data", (d: Buffer) => {
    out.stdout += d;
  });
  child.stderr!.on("data", (d: Buffer) => {
    out.stderr += d;
  });
  const timer = o.timeoutMs === undefined ? undefined : setTimeout(() => child.kill("SIGKILL"), o.timeoutMs);
  const exited = new Promise<number>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve(code ?? -1);
    });
  });
  return {
    child,
    get stdout() {
      return out.stdout;
    },
    get stderr() {
      return out.stderr;
    },
    exited,
  };
}

/** Runs the slimroot CLI from source to the end. */
export async function runCli(
  args: string[],
  env: Record<string, string> = {},
  o: CliOptions = {},
): Promise<CliResult> {
  const running = startCli(args, env, o);
  const code = await running.exited;
  return { code, stdout: running.stdout, stderr: running.stderr };
}

/**
 * Runs the CLI and expects it to end by itself within `ms`: one that does not (blocked in an
 * open(), say) fails the test, after a SIGTERM that must still end it within 5 s.
 */
export async function runCliWithin(ms: number, args: string[], env: Record<string, string> = {}) {
  const started = Date.now();
  const running = startCli(args, env);
  const timer = (t: number) => new Promise<"late">((resolve) => setTimeout(resolve, t, "late").unref());
  const first = await Promise.race([running.exited, timer(ms)]);
  if (first === "late") {
    running.child.kill("SIGTERM");
    const after = await Promise.race([running.exited, timer(5000)]);
    if (after === "late") running.child.kill("SIGKILL");
    throw new Error(
      `slimroot ${args.join(" ")}: still running after ${ms} ms; SIGTERM ${after === "late" ? "did not end it" : "ended it"}`,
    );
  }
  return { code: first, stdout: running.stdout, stderr: running.stderr, ms: Date.now() - started };
}
