import { spawn } from "node:child_process";
import { EnvironmentError, UserError } from "../util/errors.js";
import { isKnownTool, toolNotFound } from "../util/tools.js";

export interface ToolRun {
  /** Also named in messages. */
  output: string;
  env?: NodeJS.ProcessEnv;
  stdin?: string;
  /** Variables the tool must not see. */
  unset?: readonly string[];
}

/**
 * Runs a mkfs-like tool to the end. A full output filesystem is the user's problem (exit 1,
 * named); any other failure is the tool's last stderr line.
 */
export function runTool(command: string, args: readonly string[], r: ToolRun): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: [r.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      env: Object.fromEntries(
        Object.entries({ ...process.env, ...r.env }).filter(([k]) => !r.unset?.includes(k)),
      ),
    });
    let out = "";
    let err = "";
    child.stdout!.on("data", (d: Buffer) => {
      out = (out + d.toString()).slice(-65536);
    });
    child.stderr!.on("data", (d: Buffer) => {
      err = (err + d.toString()).slice(-8192);
    });
    if (r.stdin !== undefined) {
      child.stdin!.on("error", () => undefined);
      child.stdin!.end(r.stdin);
    }
    child.on("error", (e: NodeJS.ErrnoException) => {
      reject(e.code === "ENOENT" ? new EnvironmentError(toolNotFound(command)) : e);
    });
    child.on("close", (code, signal) => {
      if (code === 0) return resolve(out);
      const text = `${err}\n${out}`;
      if (/No space left on device/i.test(text))
        return reject(new UserError(`${r.output}: no space left on the output's filesystem`));
      // Under fakeroot, the failure is the tool it ran.
      const tool = command === "fakeroot" ? (args.find(isKnownTool) ?? command) : command;
      const last = text
        .split("\n")
        .map((l) => l.trim())
        .filter(Boolean)
        .pop();
      reject(new ToolError(`${tool} failed (${signal ?? `exit ${code}`}): ${last ?? "no message"}`, text));
    });
  });
}

/** A tool's non-zero exit, with everything it said (writers match on it). */
export class ToolError extends EnvironmentError {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(message);
  }
}
