/** The CLI's commands: main.ts registers each, entry.ts keeps a code cache for each. */
export const COMMAND_NAMES = [
  "bench",
  "build",
  "inspect",
  "kernel",
  "pull",
  "push",
  "run",
  "snapshot",
  "trace",
] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];
