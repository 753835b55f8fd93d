/**
 * Where a build may write: checked before anything is read, so a bad `-o` is one line at
 * once, never a raw error after the whole build, and never the input itself.
 */
import type { Stats } from "node:fs";
import { constants } from "node:fs";
import { access, realpath, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { splitArchiveRef } from "../image/docker-archive.js";
import { splitLayoutRef } from "../image/oci-layout.js";
import { parseSourceRef } from "../source/schemes.js";
import { UserError } from "../util/errors.js";

/** The sidecar that explains an image: OUTPUT.why. */
export function whyPath(output: string): string {
  // A directory output (OUTPUT/) gets its OUTPUT.why beside it.
  return `${output.replace(/(.)\/+$/, "$1")}.why`;
}

/** A host path the build reads, and how the user named it. */
export interface InputPath {
  path: string;
  what: string;
}

/** The host paths an image is read from: its source (not a registry) and the --add sources. */
export function imageInputs(o: {
  source: string;
  additions: readonly { source: string; dest: string }[];
}): InputPath[] {
  const ref = parseSourceRef(o.source);
  const paths: InputPath[] = [];
  if (ref.transport === "oci") paths.push({ path: splitLayoutRef(ref.value).path, what: ref.text });
  else if (ref.transport === "docker-archive")
    paths.push({ path: splitArchiveRef(ref.value).path, what: ref.text });
  else if (ref.transport !== "docker") paths.push({ path: ref.value, what: ref.text });
  for (const a of o.additions) paths.push({ path: a.source, what: `--add ${a.source}:${a.dest}` });
  return paths;
}

function kindOf(st: Stats): string {
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

/**
 * Refuses an output (named as `flag`, default -o; with its .why unless `why` is false) that is not a regular file, whose directory is missing or
 * not writable, or that is one of the inputs or inside an input directory.
 */
export async function checkOutput(
  output: string,
  inputs: readonly InputPath[],
  opts: { why?: boolean; flag?: string; directory?: boolean } = {},
): Promise<void> {
  const name = `${opts.flag ?? "-o"} ${output}`;
  const dir = dirname(resolve(output));
  const dst = await stat(dir).catch(() => undefined);
  if (!dst?.isDirectory()) throw new UserError(`${name}: no such directory ${dir}`);
  await access(dir, constants.W_OK).catch((err: NodeJS.ErrnoException) => {
    throw new UserError(`${name}: cannot write in ${dir} (${err.code})`);
  });
  const targets = opts.why === false ? [output] : [output, whyPath(output)];
  const outs: { path: string; real: string; st: Stats | undefined }[] = [];
  for (const t of targets) {
    const st = await stat(t).catch(() => undefined);
    // A directory output (--format initramfs-list) is checked by its writer.
    if (st && !st.isFile() && !(opts.directory && t === output && st.isDirectory()))
      throw new UserError(`${name}: ${t === output ? "" : `${t} `}is ${kindOf(st)}; give the path of a file`);
    outs.push({ path: t, real: await realTarget(t), st });
  }
  for (const input of inputs) {
    const ist = await stat(input.path).catch(() => undefined);
    if (!ist) continue; // reading the source says what is wrong with it
    const real = await realpath(input.path);
    const inside = real.endsWith("/") ? real : `${real}/`;
    for (const o of outs) {
      const same = o.real === real || (o.st !== undefined && o.st.dev === ist.dev && o.st.ino === ist.ino);
      if (same)
        throw new UserError(`${name}: ${o.path} is the input ${input.what}; refusing to overwrite it`);
      if (ist.isDirectory() && o.real.startsWith(inside))
        throw new UserError(
          `${name}: ${o.path} is inside the input ${input.what}; refusing to write into it`,
        );
    }
  }
}
