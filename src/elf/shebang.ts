/** Scripts the kernel runs through an interpreter: `#!` lines, and `env`'s command. */

/** A "#!" line as the kernel reads it: the interpreter and at most one argument. */
export interface Shebang {
  interpreter: string;
  arg?: string;
}

/** Linux reads this much of a script to find its interpreter (BINPRM_BUF_SIZE). */
const SHEBANG_MAX = 256;

export function parseShebang(buf: Uint8Array): Shebang | undefined {
  if (buf.length < 2 || buf[0] !== 0x23 || buf[1] !== 0x21) return undefined;
  const head = Buffer.from(buf.buffer, buf.byteOffset, Math.min(buf.length, SHEBANG_MAX));
  const nl = head.indexOf(0x0a);
  // Only spaces and tabs separate: the kernel keeps a "\r", which then fails to exec.
  const line = head.toString("utf8", 2, nl < 0 ? head.length : nl).replace(/[ \t]+$/, "");
  const m = /^[ \t]*([^ \t]+)(?:[ \t]+(.*))?$/.exec(line);
  if (!m) return undefined;
  return m[2] ? { interpreter: m[1]!, arg: m[2] } : { interpreter: m[1]! };
}

/** env options that take the next word as their value. */
const ENV_OPTS_WITH_VALUE = new Set(["-u", "--unset", "-C", "--chdir", "-P", "-a", "--argv0"]);

/**
 * The command `env` runs given a shebang's argument ("python3", "-S python3 -u",
 * "-i PATH=/x perl"). Whitespace always splits here, which is what -S asks for and the only
 * useful reading otherwise. Undefined when there is no command.
 */
export function envCommand(arg: string | undefined): string | undefined {
  if (!arg) return undefined;
  const words = arg.split(/[ \t]+/).filter((w) => w !== "");
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (w === "--") return words[i + 1];
    if (ENV_OPTS_WITH_VALUE.has(w)) {
      i++;
      continue;
    }
    if (w.startsWith("-S") && w.length > 2) return envCommand(w.slice(2));
    if (w.startsWith("--split-string=")) return envCommand(w.slice("--split-string=".length));
    if (w.startsWith("-")) continue;
    if (w.includes("=")) continue;
    return w;
  }
  return undefined;
}
