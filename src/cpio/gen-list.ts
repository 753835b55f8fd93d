/**
 * The file list the kernel's usr/gen_init_cpio reads (CONFIG_INITRAMFS_SOURCE): one entry a
 * line, fields separated by spaces or tabs, `#` at the start of a line for a comment.
 *
 *   file <name> <location> <mode> <uid> <gid> [<hard links>]
 *   dir <name> <mode> <uid> <gid>
 *   nod <name> <mode> <uid> <gid> <b|c> <maj> <min>
 *   slink <name> <target> <mode> <uid> <gid>
 *   pipe <name> <mode> <uid> <gid>
 *   sock <name> <mode> <uid> <gid>
 *
 * As in gen_init_cpio: modes are octal, ids decimal, `${VAR}` in a location is taken from the
 * environment, and names and locations hold no whitespace (the format cannot say it). Where
 * gen_init_cpio warns and goes on (an unknown type, a field too many), this reader refuses.
 */
import { displayName, nameBytes } from "../tree/path.js";
import { UserError } from "../util/errors.js";

/**
 * What a list field cannot hold: gen_init_cpio splits fields with sscanf's %s, at C's
 * isspace() bytes (space, \t, \n, \v, \f, \r), and has no escape. Every other byte, `${`
 * included, is kept: gen_init_cpio expands `${VAR}` only in a file's location, and slimroot's
 * locations never hold a name (list-dir.ts).
 */
export const LIST_FORBIDDEN = {
  pattern: /[ \t\n\v\f\r]/,
  why: "a gen_init_cpio list cannot say whitespace",
};

/** gen_init_cpio reads a line with fgets into 2 * PATH_MAX + 50 bytes: longer ones are cut. */
export const MAX_LINE_BYTES = 2 * 4096 + 50 - 2;

interface Owned {
  /** Permission bits (0o7777). */
  mode: number;
  uid: number;
  gid: number;
}

export type ListEntry =
  | (Owned & { type: "file"; names: string[]; location: string })
  | (Owned & { type: "dir" | "pipe" | "sock"; name: string })
  | (Owned & { type: "slink"; name: string; target: string })
  | (Owned & { type: "nod"; name: string; dev: "b" | "c"; major: number; minor: number });

/** Each type with the fields after it; `file` may have more names (its hard links). */
const FIELDS = {
  file: ["name", "location", "mode", "uid", "gid"],
  dir: ["name", "mode", "uid", "gid"],
  nod: ["name", "mode", "uid", "gid", "dev", "major", "minor"],
  slink: ["name", "target", "mode", "uid", "gid"],
  pipe: ["name", "mode", "uid", "gid"],
  sock: ["name", "mode", "uid", "gid"],
} as const;

type ListType = keyof typeof FIELDS;

/** Parses a list; a bad line throws one UserError naming FILE:LINE. */
export function parseList(
  text: string,
  file: string,
  env: Record<string, string | undefined> = process.env,
): { entry: ListEntry; line: number }[] {
  const out: { entry: ListEntry; line: number }[] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    if (raw.startsWith("#")) continue;
    const words = raw.split(/[ \t\r\v\f]+/).filter(Boolean);
    if (words.length === 0) continue;
    const at = `${file}:${i + 1}`;
    const type = words[0]!;
    if (!Object.hasOwn(FIELDS, type))
      throw new UserError(
        `${at}: unknown type ${JSON.stringify(type)} (use ${Object.keys(FIELDS).join(", ")})`,
      );
    const names = FIELDS[type as ListType];
    const args = words.slice(1);
    if (args.length < names.length || (type !== "file" && args.length > names.length)) {
      throw new UserError(`${at}: expected "${type} <${names.join("> <")}>", got ${args.length} fields`);
    }
    const f = Object.fromEntries(names.map((n, k) => [n, args[k]!])) as Record<string, string>;
    const owned = {
      mode: number(f.mode!, /^[0-7]{1,6}$/, 8, 0o7777, at, "mode (octal, at most 7777)"),
      uid: number(f.uid!, /^\d{1,10}$/, 10, 0xffffffff, at, "uid"),
      gid: number(f.gid!, /^\d{1,10}$/, 10, 0xffffffff, at, "gid"),
    };
    let entry: ListEntry;
    if (type === "file") {
      entry = {
        type,
        names: [f.name!, ...args.slice(names.length)],
        location: expandVars(f.location!, env, at),
        ...owned,
      };
    } else if (type === "slink") {
      entry = { type, name: f.name!, target: f.target!, ...owned };
    } else if (type === "nod") {
      if (f.dev !== "b" && f.dev !== "c") throw new UserError(`${at}: device type ${f.dev}: expected b or c`);
      const major = number(f.major!, /^\d{1,10}$/, 10, 0xffffffff, at, "major");
      const minor = number(f.minor!, /^\d{1,10}$/, 10, 0xffffffff, at, "minor");
      entry = { type, name: f.name!, dev: f.dev, major, minor, ...owned };
    } else {
      entry = { type: type as "dir" | "pipe" | "sock", name: f.name!, ...owned };
    }
    out.push({ entry, line: i + 1 });
  }
  return out;
}

function number(text: string, pattern: RegExp, radix: number, max: number, at: string, what: string): number {
  const v = pattern.test(text) ? Number.parseInt(text, radix) : Number.NaN;
  if (!(v <= max)) throw new UserError(`${at}: ${what} ${JSON.stringify(text)} is not valid`);
  return v;
}

/** gen_init_cpio's ${VAR}; an unset variable is refused instead of becoming "". */
function expandVars(location: string, env: Record<string, string | undefined>, at: string): string {
  return location.replace(/\$\{([^}]*)\}/g, (_, name: string) => {
    const v = env[name];
    if (v === undefined) throw new UserError(`${at}: \${${name}} in the location is not set`);
    return v;
  });
}

/**
 * One list line, as bytes (names are bytes: see tree/path.ts); throws a UserError naming the
 * entry for a field or a line the format cannot hold.
 */
export function encodeListLine(e: ListEntry): Buffer {
  const line = nameBytes(listLine(e));
  if (line.length > MAX_LINE_BYTES) {
    const name = e.type === "file" ? e.names[0]! : e.name;
    throw new UserError(
      `${displayName(name)}: initramfs-list cannot hold a line of ${line.length} bytes (gen_init_cpio reads at most ${MAX_LINE_BYTES}; hard links are all on one line)`,
    );
  }
  return line;
}

function listLine(e: ListEntry): string {
  const owned = `${e.mode.toString(8).padStart(4, "0")} ${e.uid} ${e.gid}`;
  switch (e.type) {
    case "file":
      return `file ${word(e.names[0]!)} ${word(e.location)} ${owned}${e.names
        .slice(1)
        .map((n) => ` ${word(n)}`)
        .join("")}`;
    case "slink":
      return `slink ${word(e.name)} ${word(e.target)} ${owned}`;
    case "nod":
      return `nod ${word(e.name)} ${owned} ${e.dev} ${e.major} ${e.minor}`;
    default:
      return `${e.type} ${word(e.name)} ${owned}`;
  }
}

function word(s: string): string {
  if (s === "" || LIST_FORBIDDEN.pattern.test(s))
    throw new UserError(`${displayName(s)}: initramfs-list cannot hold an empty field or whitespace`);
  return s;
}
