/**
 * Where slimroot may write: every output of a command is checked here before anything is
 * read or built, so a bad `-o` is one line at once, never a raw error after the work, never
 * an input (by device and inode, so through symlinks and hard links too), never a device,
 * FIFO, socket or a directory slimroot did not make, and never another output of the same
 * command.
 */
import type { Stats } from "node:fs";
import { constants } from "node:fs";
import { access, lstat, readdir, readFile, realpath, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { UserError } from "../util/errors.js";

/** The sidecar that explains an image: OUTPUT.why. */
export function whyPath(output: string): string {
  // A directory output (OUTPUT/) gets its OUTPUT.why beside it.
  return `${output.replace(/(.)\/+$/, "$1")}.why`;
}

/** A host path a command reads, and how the user named it. */
export interface InputPath {
  path: string;
  what: string;
}

/** One output of a command. */
export interface OutputSpec {
  path: string;
  /** How the user gave it, for messages (default -o). */
  flag?: string;
  /** With its OUTPUT.why sidecar (default true). */
  why?: boolean;
  /** A directory slimroot replaces whole (checkOutputDir). */
  directory?: boolean;
  /** The message prefix, when not `FLAG PATH` (a file inside an output directory). */
  label?: string;
}

/**
 * The file in every directory slimroot writes (an initramfs-list output, a `run --dry-run -o
 * DIR`) listing what it wrote there: only such a directory, an empty one or a new one is
 * written into, and only the names it lists are ever replaced or removed.
 */
export const OUTPUT_MARK = ".slimroot-output";

function kindOf(st: Stats): string {
  if (st.isFile()) return "a regular file";
  if (st.isDirectory()) return "a directory";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isFIFO()) return "a named pipe";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}

/** The path `p` will have once written: its directory's real path, and the link's target if it is one. */
async function realTarget(p: string): Promise<string> {
  const abs = resolve(p);
  return realpath(abs).catch(async () => join(await realpath(dirname(abs)), basename(abs)));
}

/** The mark's list of names, or undefined when it is missing or not slimroot's. */
async function readMark(dir: string): Promise<string[] | undefined> {
  const mark = join(dir, OUTPUT_MARK);
  // Checked before it is opened: a FIFO would block, a device would never end.
  const st = await lstat(mark).catch(() => undefined);
  if (!st?.isFile() || st.size > 1 << 20) return undefined;
  try {
    const doc = JSON.parse(await readFile(mark, "utf8")) as { files?: unknown };
    const files = doc.files;
    if (!Array.isArray(files)) return undefined;
    if (!files.every((f) => typeof f === "string" && f !== "" && !f.includes("/") && f !== ".."))
      return undefined;
    return files as string[];
  } catch {
    return undefined;
  }
}

/** The mark's text for a directory holding `names`. */
export function outputMark(names: readonly string[]): string {
  return `${JSON.stringify({ "written by": "slimroot", files: [...names].sort() }, null, 2)}\n`;
}

/**
 * Refuses a directory output that exists and is not slimroot's: anything but a directory, or a
 * directory holding a name its mark does not list. Returns the names the mark lists ([] for
 * an empty directory), or undefined when there is no such directory yet.
 */
export async function checkOutputDir(dir: string, name: string): Promise<string[] | undefined> {
  const st = await stat(dir).catch(() => undefined);
  if (!st) return undefined;
  if (!st.isDirectory()) throw new UserError(`${name}: exists and is ${kindOf(st)}, not a directory`);
  const entries = await readdir(dir);
  if (entries.length === 0) return [];
  const listed = entries.includes(OUTPUT_MARK) ? await readMark(dir) : undefined;
  if (!listed)
    throw new UserError(
      `${name}: holds files slimroot did not write; give a new or empty directory (nothing was changed)`,
    );
  const foreign = entries.find((e) => e !== OUTPUT_MARK && !listed.includes(e));
  if (foreign !== undefined)
    throw new UserError(
      `${name}: holds ${foreign}, which slimroot did not write; refusing to replace the directory`,
    );
  return listed;
}

interface Target {
  path: string;
  name: string;
  real: string;
  st: Stats | undefined;
}

/**
 * Refuses, in one line naming the flag, any output (and its .why) whose directory is missing
 * or not writable; that is not a regular file (a directory output: not slimroot's, see
 * checkOutputDir); that is one of the inputs or inside an input directory; or that is the same
 * file as another output of the same command.
 */
export async function checkOutputs(
  specs: readonly OutputSpec[],
  inputs: readonly InputPath[],
): Promise<void> {
  const all: Target[] = [];
  const dirs: { path: string; name: string }[] = [];
  for (const spec of specs) {
    const name = spec.label ?? `${spec.flag ?? "-o"} ${spec.path}`;
    const dir = dirname(resolve(spec.path));
    const dst = await stat(dir).catch(() => undefined);
    if (!dst?.isDirectory()) throw new UserError(`${name}: no such directory ${dir}`);
    await access(dir, constants.W_OK).catch((err: NodeJS.ErrnoException) => {
      throw new UserError(`${name}: cannot write in ${dir} (${err.code})`);
    });
    const targets = spec.why === false ? [spec.path] : [spec.path, whyPath(spec.path)];
    for (const t of targets) {
      const st = await stat(t).catch(() => undefined);
      if (spec.directory && t === spec.path) dirs.push({ path: resolve(t), name });
      else if (st && !st.isFile())
        throw new UserError(
          `${name}: ${t === spec.path ? "" : `${t} `}is ${kindOf(st)}; give the path of a file`,
        );
      all.push({ path: t, name, real: await realTarget(t), st });
    }
  }
  for (const [i, a] of all.entries()) {
    const b = all.slice(0, i).find((o) => sameFile(o, a));
    if (b)
      throw new UserError(`${a.name}: ${a.path} is also written by ${b.name}; give each output its own file`);
  }
  for (const input of inputs) {
    const ist = await stat(input.path).catch(() => undefined);
    if (!ist) continue; // reading the input says what is wrong with it
    const real = await realpath(input.path);
    const inside = real.endsWith("/") ? real : `${real}/`;
    for (const o of all) {
      const same = o.real === real || (o.st !== undefined && o.st.dev === ist.dev && o.st.ino === ist.ino);
      if (same)
        throw new UserError(`${o.name}: ${o.path} is the input ${input.what}; refusing to overwrite it`);
      if (ist.isDirectory() && o.real.startsWith(inside))
        throw new UserError(
          `${o.name}: ${o.path} is inside the input ${input.what}; refusing to write into it`,
        );
    }
  }
  // A directory output last: "is the input" says more than "is not a directory".
  for (const d of dirs) await checkOutputDir(d.path, d.name);
}

function sameFile(a: Target, b: Target): boolean {
  return (
    a.real === b.real ||
    (a.st !== undefined && b.st !== undefined && a.st.dev === b.st.dev && a.st.ino === b.st.ino)
  );
}

/** checkOutputs for one output (`flag`, default -o; with its .why unless `why` is false). */
export function checkOutput(
  output: string,
  inputs: readonly InputPath[],
  opts: { why?: boolean; flag?: string; directory?: boolean } = {},
): Promise<void> {
  return checkOutputs([{ path: output, ...opts }], inputs);
}
