/**
 * POSIX shell quoting, for every host command slimroot prints for someone to paste: a word
 * that is not plain (`tap0;reboot`, `$(id)`, a space) is single-quoted, so it stays one word
 * and nothing in it runs.
 */
export function shellQuote(args: readonly string[]): string {
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
}
