#!/usr/bin/env node
import { Command, CommanderError } from "commander";
import { exitCodeOf, oneLine } from "../util/errors.js";
import { removeTempPathsSync } from "../util/temp-paths.js";
import type { CommandName } from "./commands.js";

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

// Each command's module, loaded when it is the one asked for: loading every command's code
// (the VM, kernel and bench stacks) took a build a third of its start. Help, an unknown
// command or none: all of them, for the listing and commander's messages; --version alone: none.
const COMMANDS: Record<CommandName, () => Promise<(program: Command) => void>> = {
  bench: async () => (await import("./bench.js")).registerBench,
  build: async () => (await import("./build.js")).registerBuild,
  inspect: async () => (await import("./inspect.js")).registerInspect,
  kernel: async () => (await import("./kernel.js")).registerKernel,
  pull: async () => (await import("./pull.js")).registerPull,
  push: async () => (await import("./push.js")).registerPush,
  run: async () => (await import("./run.js")).registerRun,
  snapshot: async () => (await import("./snapshot.js")).registerSnapshot,
  trace: async () => (await import("./trace.js")).registerTrace,
};

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

// No top-level await: the built CLI is one CommonJS script (scripts/bundle-cli.ts), which
// cli/entry.ts runs from V8's code cache.
async function main(): Promise<void> {
  const asked = process.argv[2];
  const version = process.argv.length === 3 && (asked === "--version" || asked === "-V");
  const wanted = (
    asked !== undefined && Object.hasOwn(COMMANDS, asked) ? [asked] : version ? [] : Object.keys(COMMANDS)
  ) as CommandName[];
  for (const register of await Promise.all(wanted.map((name) => COMMANDS[name]()))) register(program);
  await program.parseAsync(process.argv);
}

main().catch((err: unknown) => {
  if (err instanceof CommanderError) {
    // Help and version are not errors (0); usage errors were already printed as one line:
    // 1, or 125 for run (its own rule, cli/run.ts).
    process.exitCode = err.exitCode;
  } else {
    process.stderr.write(`slimroot: ${oneLine(err)}\n`);
    if (process.env.SLIMROOT_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exitCode = exitCodeOf(err);
  }
});
