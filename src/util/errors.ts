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
  return printable(msg.replace(/\s*\n\s*/g, " ").trim());
}

/**
 * Text from an image or a file (names, link targets) made safe for a terminal: control
 * characters (an escape sequence could rewrite the screen or the title) become \xNN.
 */
export function printable(text: string): string {
  return text.replace(
    // biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
    /[\x00-\x08\x0a-\x1f\x7f-\x9f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

export function exitCodeOf(err: unknown): number {
  if (err instanceof UserError || err instanceof EnvironmentError) return err.exitCode;
  return 2;
}
