/**
 * A directory of outputs that belong together (`run --dry-run -o DIR`: vm.json, the kernel,
 * the initrd): new, empty, or one slimroot wrote before (its OUTPUT_MARK lists what is
 * slimroot's). Files are written to temp files beside their targets as they come and renamed
 * into place together, with the mark, at `commit`; before it nothing in the directory has
 * changed. Only names the old mark lists are ever replaced or removed.
 */
import { rmSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { Readable } from "node:stream";
import { UserError } from "../util/errors.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";
import { Batch, type FileWriter, lstatOrUndefined } from "./atomic.js";
import { checkOutputDir, checkOutputs, type InputPath, OUTPUT_MARK, outputMark } from "./output.js";

export class OutputDir {
  private readonly batch: Batch;
  private readonly names = new Set<string>();
  private committed = false;

  private constructor(
    /** Absolute. */
    readonly path: string,
    private readonly name: string,
    private readonly inputs: readonly InputPath[],
    /** What the old mark listed. */
    private readonly listed: readonly string[],
    /** Made by us: removed again if nothing is committed. */
    private readonly made: boolean,
    durable: boolean,
  ) {
    this.batch = new Batch({ durable });
  }

  /**
   * Checks `dir` (named `flag DIR` in messages) and makes it when it is new (its parent must
   * exist, as for a file output). Nothing in it is touched until commit. `durable: false`
   * (Batch): a directory this process removes when done, whose files need no fsync.
   */
  static async open(
    dir: string,
    flag: string,
    inputs: readonly InputPath[],
    o: { durable: boolean } = { durable: true },
  ): Promise<OutputDir> {
    const path = resolve(dir);
    const name = `${flag} ${dir}`;
    // The directory itself: its parent exists and is writable, it is no input and in none.
    await checkOutputs([{ path, why: false, directory: true, label: name }], inputs);
    const listed = await checkOutputDir(path, name);
    if (listed) return new OutputDir(path, name, inputs, listed, false, o.durable);
    await mkdir(path).catch((err: NodeJS.ErrnoException) => {
      throw new UserError(`${name}: cannot create the directory (${err.code ?? err.message})`);
    });
    trackTempPath(path);
    return new OutputDir(path, name, inputs, [], true, o.durable);
  }

  /** The final path of `name` in the directory, reserved for this run's files. */
  file(name: string): string {
    if (name.includes("/") || name === OUTPUT_MARK)
      throw new Error(`internal: ${name} in an output directory`);
    this.names.add(name);
    return join(this.path, name);
  }

  /**
   * Writes files of this directory (targets from `file`) to temp files now, checked against
   * the inputs; they are renamed into place at commit.
   */
  readonly write: FileWriter = async (files, beforeRename) => {
    for (const f of files)
      if (
        dirname(resolve(f.target)) !== this.path ||
        !this.names.has(resolve(f.target).slice(this.path.length + 1))
      )
        throw new Error(`internal: ${f.target} is not a file of ${this.path}`);
    await checkOutputs(
      files.map((f) => ({ path: f.target, why: false, label: this.name })),
      this.inputs,
    );
    const first = this.batch.temps().length;
    const bytes: number[] = [];
    for (const f of files) bytes.push(await this.batch.add(f));
    await beforeRename?.(this.batch.temps().slice(first));
    return bytes;
  };

  /**
   * Renames every file written into place with the new mark, together; then removes what the
   * old mark listed and this run did not write (regular files only: a VMM's socket stays).
   */
  async commit(): Promise<void> {
    await this.batch.add({
      target: join(this.path, OUTPUT_MARK),
      source: Readable.from([outputMark([...this.names])]),
    });
    this.batch.commit();
    this.committed = true;
    if (this.made) untrackTempPath(this.path);
    for (const stale of this.listed) {
      if (this.names.has(stale)) continue;
      const p = join(this.path, stale);
      if (lstatOrUndefined(p)?.isFile()) rmSync(p, { force: true });
    }
  }

  /** Removes the temp files; and the directory, if it was made here and nothing was committed. */
  async discard(): Promise<void> {
    await this.batch.discard();
    if (this.made && !this.committed) {
      await rm(this.path, { recursive: true, force: true });
      untrackTempPath(this.path);
    }
  }
}
