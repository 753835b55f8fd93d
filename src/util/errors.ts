/** A problem with what the user gave us (flag, file, image): exit code 1. */
export class UserError extends Error {
  readonly exitCode = 1;
}

/** A problem with the machine or a tool we run (missing binary, I/O failure): exit code 2. */
export class EnvironmentError extends Error {
  readonly exitCode = 2;
}

/** One line, whatever the error: the CLI prints exactly this. */
export function oneLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/\s*\n\s*/g, " ").trim();
}

export function exitCodeOf(err: unknown): number {
  if (err instanceof UserError || err instanceof EnvironmentError) return err.exitCode;
  return 2;
}
