#!/usr/bin/env node
import { Command, CommanderError } from "commander";
import { exitCodeOf, oneLine } from "../util/errors.js";
import { removeTempPathsSync } from "../util/temp-paths.js";
import { registerBench } from "./bench.js";
import { registerBuild } from "./build.js";
import { registerInspect } from "./inspect.js";
import { registerKernel } from "./kernel.js";
import { registerRun } from "./run.js";
import { registerTrace } from "./trace.js";

const program = new Command("slimroot")
  .description(
    "Turn an application image into the minimum bootable root filesystem for a microVM, and boot it.",
  )
  .version("0.1.0")
  .enablePositionalOptions()
  .showHelpAfterError(false)
  .exitOverride()
  .configureOutput({
    outputError: (str, write) => write(`slimroot: ${str.replace(/^error: /, "").trim()}\n`),
  });

registerBench(program);
registerBuild(program);
registerInspect(program);
registerKernel(program);
registerRun(program);
registerTrace(program);

// Every way of being told to stop cleans up: a terminal that hangs up, Ctrl-\ as well as
// Ctrl-C and kill. (`run` puts its own handlers in place while a VM runs, and stops it gracefully.)
for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
  ["SIGHUP", 129],
  ["SIGQUIT", 131],
] as const) {
  process.on(signal, () => {
    removeTempPathsSync();
    process.exit(code);
  });
}

// A reader that went away (`slimroot inspect FILE | head`) ends us quietly, as SIGPIPE ends
// other tools (status 141); the exit hooks still stop a VM and temp files are removed.
// Errors on stderr cannot be reported anywhere.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  removeTempPathsSync();
  if (err.code !== "EPIPE") process.stderr.write(`slimroot: cannot write to stdout: ${err.message}\n`);
  process.exit(err.code === "EPIPE" ? 141 : 2);
});
process.stderr.on("error", () => undefined);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and version are not errors (0); usage errors were already printed as one line:
    // 1, or 125 for run (its own rule, cli/run.ts).
    process.exitCode = err.exitCode;
  } else {
    process.stderr.write(`slimroot: ${oneLine(err)}\n`);
    if (process.env.SLIMROOT_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exitCode = exitCodeOf(err);
  }
}
