import { spawn } from "node:child_process";
import { Duplex, PassThrough } from "node:stream";
import { EnvironmentError } from "./errors.js";
import { toolNotFound } from "./tools.js";

/**
 * Runs `command args` as a stream filter: what is written goes to its stdin, its stdout is
 * what is read. A non-zero exit or a failure to start destroys the stream with an error that
 * names `what` and the tool's own message.
 */
export function toolFilter(command: string, args: string[], what: string): Duplex {
  const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
  const output = new PassThrough();
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdout.pipe(output, { end: false });
  const duplex = Duplex.from({ writable: child.stdin, readable: output });
  // A reader that stops early (initramfsFacts reads only up to /init) destroys the stream: the
  // tool, its input cut off, would otherwise wait forever and keep our process alive.
  duplex.on("close", () => {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  });
  child.stdin.on("error", () => {
    // EPIPE when the tool exits early; its exit status tells the real story.
  });
  child.on("error", (err) => {
    const e =
      (err as NodeJS.ErrnoException).code === "ENOENT"
        ? new EnvironmentError(`${what}: ${toolNotFound(command)}`)
        : new EnvironmentError(`${what}: cannot run ${command}: ${err.message}`);
    duplex.destroy(e);
  });
  child.on("close", (code, signal) => {
    if (code === 0) output.end();
    else {
      const why = stderr.trim().split("\n").pop() || (signal ? `killed by ${signal}` : `exit status ${code}`);
      duplex.destroy(new Error(`${command}: ${why}`));
    }
  });
  return duplex;
}
