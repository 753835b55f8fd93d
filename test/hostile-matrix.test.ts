/**
 * The hostile matrix (issue 17, "Checks"): every hostile tree (rows, test/support/hostile-trees.ts)
 * x every writer (COLUMNS) x every way to name the output (TRICKS). Each cell is either
 * byte-exact, read back with the format's own tool, or a refusal: exit 1, one line naming the
 * entry (or -o), the old output intact, nothing created or changed beside the output or in the
 * cell's own TMPDIR. A new writer is one more entry in COLUMNS and inherits every row and trick.
 *
 * Tricks whose -o must be refused before the source is read run against two sample rows
 * (SLIMROOT_MATRIX=full: every row); the 3000-deep and sparse rows run against every writer
 * with a new (relative) and an existing output only. MATRIX_REPORT=FILE writes every failing cell there.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import {
  appendFile,
  copyFile,
  cp,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { REPO } from "./support/cli.js";
import { genInitCpio } from "./support/gen-init-cpio.js";
import { type Capacity, HOSTILE_ROWS, type HostileRow, type Snapshot } from "./support/hostile-trees.js";
import { hostArch, slimrootKernel } from "./support/kernel.js";
import { rawTar } from "./support/raw-tar.js";
import {
  commandOutput,
  cpioSnapshot,
  diffSnapshots,
  mountedSnapshot,
  scratchDir,
  squashfsSnapshot,
  withoutXattrs,
} from "./support/readback.js";

const FULL = process.env.SLIMROOT_MATRIX === "full";
const ROOT = process.getuid?.() === 0;
/** What a cell may write to one file: far above any image here, far below a full disk. */
const FILE_SIZE_LIMIT = 512 * 1024 * 1024;
const CELL_TIMEOUT_MS = 120_000;

let work = "";

/** A writer: how to run it on a row's source, and how to read its output back. */
interface Column {
  name: string;
  /** The output's file name extension (a directory output: the name's). */
  ext: string;
  capacity: Capacity;
  /** -o names a directory. */
  directory?: boolean;
  /** Why the column runs only the sample rows (unless SLIMROOT_MATRIX=full), if it does. */
  sampleRowsOnly?: string;
  /** Why the column cannot run here, if it cannot. */
  skip?: () => string | undefined;
  /** The input the command reads for a row's tar (default: the tar itself). */
  input?: (row: HostileRow, tar: string) => Promise<string | { refused: string }>;
  args: (input: string, out: string) => string[];
  /** How long a cell may run before it counts as hung (default CELL_TIMEOUT_MS). */
  timeoutMs?: number;
  readBack: (output: string, scratch: string) => Promise<Snapshot>;
}

const build = (flags: string[]) => (input: string, out: string) => [
  "build",
  `tar:${input}`,
  "-o",
  out,
  "--entrypoint",
  "/bin/true",
  ...flags,
];

const cpioColumn = (compression: string, ext: string, tool: string): Column => ({
  name: `cpio+${compression}`,
  ext: `cpio.${ext}`,
  capacity: { xattrs: false, list: false },
  args: build(["--format", "cpio", "--compress", compression]),
  readBack: async (out) => cpioSnapshot([await commandOutput(tool, ["-dc", out])]),
});

/** build --layers: one gzip'd cpio per layer, then slimroot's, joined; gzip reads the members as one stream. */
const layeredColumn: Column = {
  name: "cpio+gzip --layers",
  ext: "cpio.gz",
  capacity: { xattrs: false, list: false },
  args: build(["--format", "cpio", "--compress", "gzip", "--layers"]),
  readBack: async (out) => cpioSnapshot([await commandOutput("gzip", ["-dc", out])]),
};

const needsRoot = () => (ROOT ? undefined : "reading it back mounts or extracts as root (owners, devices)");

const COLUMNS: Column[] = [
  cpioColumn("gzip", "gz", "gzip"),
  cpioColumn("xz", "xz", "xz"),
  cpioColumn("zstd", "zst", "zstd"),
  cpioColumn("lz4", "lz4", "lz4"),
  layeredColumn,
  {
    name: "ext4",
    ext: "ext4",
    capacity: { xattrs: true, list: false },
    skip: needsRoot,
    args: build(["--format", "ext4"]),
    readBack: (out, scratch) => mountedSnapshot(out, "ext4", scratch),
  },
  {
    name: "erofs",
    ext: "erofs",
    // mkfs.erofs 1.5 fails on a 255-byte name (pipeline/formats.ts says so in its row).
    capacity: { xattrs: true, list: false, maxNameBytes: 254 },
    skip: needsRoot,
    args: build(["--format", "erofs"]),
    readBack: (out, scratch) => mountedSnapshot(out, "erofs", scratch),
  },
  {
    name: "squashfs",
    ext: "sqfs",
    capacity: { xattrs: true, list: false },
    skip: needsRoot,
    args: build(["--format", "squashfs"]),
    readBack: (out, scratch) => squashfsSnapshot(out, scratch),
  },
  {
    name: "initramfs-list",
    ext: "list",
    directory: true,
    capacity: { xattrs: false, list: true },
    args: build(["--format", "initramfs-list"]),
    // The kernel's own gen_init_cpio, with no variable set that a location could expand.
    readBack: async (out) =>
      cpioSnapshot([
        await commandOutput(await genInitCpio(), ["-t", "0", join(out, "initramfs_list")], {
          PATH: process.env.PATH,
        }),
      ]),
  },
  {
    name: "kernel --embed",
    ext: "vmlinux",
    capacity: { xattrs: false, list: false },
    sampleRowsOnly: "each cell relinks the kernel (minutes); the rows' trees are the cpio column's",
    // A relink takes about 30 s on an idle machine and over 3 minutes beside other work.
    timeoutMs: 30 * 60_000,
    input: (_row, tar) => embedInput(tar),
    args: (input, out) => ["kernel", "build", "--embed", input, "-o", out],
    readBack: (out) => embeddedSnapshot(out),
  },
];

const embedInputs = new Map<string, Promise<string | { refused: string }>>();

/** The row as a cpio.gz, built once, for --embed to take; a refused row has none. */
function embedInput(tar: string): Promise<string | { refused: string }> {
  let p = embedInputs.get(tar);
  if (!p) {
    p = (async () => {
      const out = join(await scratchDir(work, "embed-inputs"), `${basename(tar)}.cpio.gz`);
      const r = await runCli(build([])(tar, out), { cwd: work, tmp: await scratchDir(work, "embed-tmp") });
      return r.code === 0 ? out : { refused: r.stderr.trim() };
    })();
    embedInputs.set(tar, p);
  }
  return p;
}

/**
 * The end of the newc archive that starts at `at` (past its TRAILER!!! entry), read here field
 * by field rather than by src/cpio, or undefined when no archive starts there.
 */
function newcEnd(b: Buffer, at: number): number | undefined {
  const hex = (off: number) => {
    const t = b.toString("latin1", off, off + 8);
    return /^[0-9a-fA-F]{8}$/.test(t) ? Number.parseInt(t, 16) : Number.NaN;
  };
  const pad = (n: number) => (4 - (n % 4)) % 4;
  for (let p = at; p + 110 <= b.length; ) {
    if (b.toString("latin1", p, p + 6) !== "070701") return undefined;
    const [fileSize, nameSize] = [hex(p + 54), hex(p + 94)];
    if (!Number.isFinite(fileSize) || !Number.isFinite(nameSize) || nameSize < 1) return undefined;
    const name = b.toString("latin1", p + 110, p + 110 + nameSize - 1);
    p += 110 + nameSize + pad(110 + nameSize);
    p += fileSize + pad(fileSize);
    if (p > b.length) return undefined;
    if (name === "TRAILER!!!") return p;
  }
  return undefined;
}

/**
 * The initramfs built into a kernel (`kernel build --embed`: a plain newc archive inside the
 * uncompressed ELF vmlinux on amd64, the Image on arm64): the first whole archive in the file.
 */
async function embeddedSnapshot(kernel: string): Promise<Snapshot> {
  const image = await readFile(kernel);
  for (let at = image.indexOf("070701"); at >= 0; at = image.indexOf("070701", at + 1)) {
    const end = newcEnd(image, at);
    if (end !== undefined) return cpioSnapshot([image.subarray(at, end)]);
  }
  throw new Error(`${kernel}: no newc archive built in`);
}

/** How a cell names its output. `refuse`: why -o itself must be refused, whatever the row. */
interface Prepared {
  /** -o as given. */
  out: string;
  /** Where the output is, for reading it back. */
  outPath: string;
  cwd: string;
  input: string;
  refuse?: string;
  /** A host path outside the cell that must be left as it was (-o /dev/null when not root). */
  hostPath?: string;
}

interface Trick {
  name: string;
  /** Runs against every row (else two sample rows, unless SLIMROOT_MATRIX=full). */
  everyRow: boolean;
  /** Runs against the rows that run against writers only (3000-deep, sparse). */
  writersOnlyRows?: boolean;
  prepare: (c: { dir: string; base: string; input: string; col: Column }) => Promise<Prepared>;
}

const SAMPLE_ROWS = new Set(["non-UTF-8 names", "xattr security.capability"]);

/** A copy of the input in the cell's directory (a trick that may write over it must not reach the shared one). */
async function ownInput(dir: string, input: string): Promise<string> {
  const copy = join(dir, `input-${basename(input)}`);
  await copyFile(input, copy);
  return copy;
}

const TRICKS: Trick[] = [
  {
    name: "relative -o",
    everyRow: true,
    writersOnlyRows: true,
    prepare: async ({ dir, base, input }) => ({ out: base, outPath: join(dir, base), cwd: dir, input }),
  },
  {
    name: "-o an existing good output",
    everyRow: true,
    writersOnlyRows: true,
    prepare: async ({ dir, base, input, col }) => {
      const previous = await previousOutput(col);
      await cp(previous, join(dir, base), { recursive: true, preserveTimestamps: true });
      await copyFile(`${previous}.why`, join(dir, `${base}.why`)).catch(() => {});
      return { out: join(dir, base), outPath: join(dir, base), cwd: dir, input };
    },
  },
  {
    name: "-o the input",
    everyRow: false,
    prepare: async ({ dir, input }) => {
      const own = await ownInput(dir, input);
      return { out: own, outPath: own, cwd: dir, input: own, refuse: "is the input" };
    },
  },
  {
    name: "-o a symlink to the input",
    everyRow: false,
    prepare: async ({ dir, base, input }) => {
      const own = await ownInput(dir, input);
      await symlink(basename(own), join(dir, base));
      return {
        out: join(dir, base),
        outPath: join(dir, base),
        cwd: dir,
        input: own,
        refuse: "is a link to the input",
      };
    },
  },
  {
    name: "-o a device",
    everyRow: false,
    prepare: async ({ dir, base, input }) => {
      // As root, a private node of /dev/null's numbers: a writer that renames over it harms only the cell.
      if (!ROOT)
        return {
          out: "/dev/null",
          outPath: "/dev/null",
          cwd: dir,
          input,
          refuse: "is a device",
          hostPath: "/dev/null",
        };
      await runTool("mknod", ["-m", "0666", join(dir, base), "c", "1", "3"]);
      return { out: join(dir, base), outPath: join(dir, base), cwd: dir, input, refuse: "is a device" };
    },
  },
  {
    name: "-o a FIFO",
    everyRow: false,
    prepare: async ({ dir, base, input }) => {
      await runTool("mkfifo", [join(dir, base)]);
      return { out: join(dir, base), outPath: join(dir, base), cwd: dir, input, refuse: "is a FIFO" };
    },
  },
  {
    name: "-o a directory of user files",
    everyRow: false,
    prepare: async ({ dir, base, input }) => {
      const d = join(dir, base);
      // Named as a list writer's own files too: none may be touched.
      await mkdir(join(d, "root"), { recursive: true });
      await writeFile(join(d, "keep.txt"), "the user's\n");
      await writeFile(join(d, "initramfs_list"), "# the user's\n");
      await writeFile(join(d, "root", "keep"), "the user's\n");
      return { out: d, outPath: d, cwd: dir, input, refuse: "is a directory slimroot did not make" };
    },
  },
];

function runTool(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: "ignore" });
    c.on("error", reject);
    c.on("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(" ")}: exit ${code}`)),
    );
  });
}

/** The built CLI when it is newer than every source file (make test builds first), else tsx. */
function cliCommand(): string[] {
  const dist = join(REPO, "dist", "cli", "main.js");
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...readdirSync(dir, { withFileTypes: true }).map((e) =>
        e.isDirectory()
          ? newest(join(dir, e.name))
          : e.name.endsWith(".ts")
            ? statSync(join(dir, e.name)).mtimeMs
            : 0,
      ),
    );
  if (existsSync(dist) && statSync(dist).mtimeMs >= newest(join(REPO, "src"))) return [dist];
  // tsx by its full URL: `--import` is resolved from the working directory, each cell's own.
  return ["--import", import.meta.resolve("tsx"), join(REPO, "src", "cli", "main.ts")];
}

let cli: string[] = [];

interface Run {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  hung: boolean;
}

/** slimroot with its own cwd and TMPDIR, each file it writes bounded by FILE_SIZE_LIMIT. */
function runCli(args: string[], o: { cwd: string; tmp: string; timeoutMs?: number }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn("prlimit", [`--fsize=${FILE_SIZE_LIMIT}`, "--", process.execPath, ...cli, ...args], {
      cwd: o.cwd,
      env: { ...process.env, TMPDIR: o.tmp },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const r: Run = { code: null, signal: null, stdout: "", stderr: "", hung: false };
    child.stdout.on("data", (d: Buffer) => {
      r.stdout += d;
    });
    child.stderr.on("data", (d: Buffer) => {
      r.stderr += d;
    });
    const timer = setTimeout(() => {
      r.hung = true;
      child.kill("SIGKILL");
    }, o.timeoutMs ?? CELL_TIMEOUT_MS);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ ...r, code, signal });
    });
  });
}

const previousOutputs = new Map<string, Promise<string>>();

/** A good output of `col` from a plain tree, built once, for the existing-output trick to copy. */
function previousOutput(col: Column): Promise<string> {
  let p = previousOutputs.get(col.name);
  if (!p) {
    p = (async () => {
      const dir = await scratchDir(work, `previous-${previousOutputs.size}`);
      const tar = join(work, "sources", "plain.tar");
      const input = col.input ? await col.input(HOSTILE_ROWS[0]!, tar) : tar;
      if (typeof input !== "string") throw new Error(`no input for the previous output: ${input.refused}`);
      const out = join(dir, `previous.${col.ext}`);
      const r = await runCli(col.args(input, out), {
        cwd: dir,
        tmp: await scratchDir(work, "previous-tmp"),
        ...(col.timeoutMs ? { timeoutMs: col.timeoutMs } : {}),
      });
      if (r.code !== 0)
        throw new Error(`building the previous output failed (exit ${r.code}): ${r.stderr.trim()}`);
      return out;
    })();
    previousOutputs.set(col.name, p);
  }
  return p;
}

/** A directory's entries, recursively, by name bytes: what each is, never opening a FIFO or device. */
async function listing(
  dir: string,
  skip: (rel: string) => boolean = () => false,
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (abs: Buffer, rel: string) => {
    for (const name of await readdir(abs, { encoding: "buffer" })) {
      const path = Buffer.concat([abs, Buffer.from("/"), name]);
      const r = rel ? `${rel}/${name.toString("latin1")}` : name.toString("latin1");
      if (skip(r)) continue;
      const st = await lstat(path);
      let what = `${st.mode.toString(8)} ${st.uid}:${st.gid}`;
      if (st.isFile())
        what += ` sha256:${createHash("sha256")
          .update(await readFile(path))
          .digest("hex")}`;
      else if (st.isSymbolicLink())
        what += ` -> ${(await readlink(path, { encoding: "buffer" })).toString("hex")}`;
      else if (st.isCharacterDevice() || st.isBlockDevice()) what += ` rdev ${st.rdev}`;
      out.set(r, what);
      if (st.isDirectory()) await walk(path, r);
    }
  };
  await walk(Buffer.from(dir), "");
  return out;
}

function listingChanges(before: Map<string, string>, after: Map<string, string>): string[] {
  const lines: string[] = [];
  for (const [p, w] of before) {
    const g = after.get(p);
    if (g === undefined) lines.push(`${JSON.stringify(p)} removed`);
    else if (g !== w) lines.push(`${JSON.stringify(p)} changed (${w} -> ${g})`);
  }
  for (const p of after.keys()) if (!before.has(p)) lines.push(`${JSON.stringify(p)} created`);
  return lines;
}

interface CellResult {
  label: string;
  ms: number;
  problems: string[];
}
const results: CellResult[] = [];
let cellCount = 0;

async function runCell(row: HostileRow, col: Column, trick: Trick, tar: string): Promise<string[]> {
  const id = ++cellCount;
  const cellDir = await scratchDir(work, `cells/${id}`);
  const dir = await scratchDir(cellDir, "out");
  const tmp = await scratchDir(cellDir, "tmp");
  const base = `matrix-cell-${process.pid}-${id}.${col.ext}`;
  const input = col.input ? await col.input(row, tar) : tar;
  if (typeof input !== "string") return [`(no input: the row is refused at build: ${input.refused})`];
  const p = await trick.prepare({ dir, base, input, col });
  const outRel = basename(p.outPath);
  const isOutput = (rel: string) => rel === outRel || rel === `${outRel}.why` || rel.startsWith(`${outRel}/`);
  const dirBefore = await listing(dir);
  const hostBefore = p.hostPath ? (await lstat(p.hostPath)).rdev : undefined;

  const timeoutMs = col.timeoutMs ?? CELL_TIMEOUT_MS;
  const r = await runCli(col.args(p.input, p.out), { cwd: p.cwd, tmp, timeoutMs });
  const problems: string[] = [];
  const refuseWhy = p.refuse ? `-o ${p.refuse}` : row.mustRefuse?.(col.capacity);
  const acceptWhy = p.refuse ? undefined : row.mustAccept?.(col.capacity);

  if (r.hung) problems.push(`hung: killed after ${timeoutMs / 1000} s`);
  else if (r.code === 0) {
    if (refuseWhy)
      problems.push(
        `built (exit 0), but ${refuseWhy}: it must be refused in one line naming ${p.refuse ? "-o" : "the entry"}`,
      );
    else {
      try {
        const want = col.capacity.xattrs ? row.expected : withoutXattrs(row.expected);
        const got = await col.readBack(p.outPath, await scratchDir(cellDir, "readback"));
        const diff = diffSnapshots(want, got);
        if (diff.length)
          problems.push(
            `read back differs: ${diff.slice(0, 12).join("; ")}${diff.length > 12 ? `; ... (${diff.length} in all)` : ""}`,
          );
      } catch (err) {
        problems.push(
          `reading the output back failed: ${(err as Error).message.split("\n").slice(0, 3).join(" / ")}`,
        );
      }
    }
    // -o should have been refused: then what the build did to what was there is part of the failure.
    const changes = p.refuse
      ? listingChanges(dirBefore, await listing(dir))
      : listingChanges(
          new Map([...dirBefore].filter(([rel]) => !isOutput(rel))),
          await listing(dir, isOutput),
        );
    if (changes.length)
      problems.push(`${p.refuse ? "in -o's directory" : "beside the output"}: ${changes.join("; ")}`);
  } else {
    if (r.code !== 1) problems.push(`exit ${r.code ?? r.signal}; a refusal exits 1`);
    const lines = r.stderr.trimEnd().split("\n");
    if (lines.length !== 1) problems.push(`stderr has ${lines.length} lines; a refusal is one line`);
    const line = lines.join("\n");
    if (p.refuse) {
      if (!line.includes(p.out)) problems.push(`the refusal does not name -o ${p.out}`);
    } else {
      if (acceptWhy) problems.push(`refused, but ${acceptWhy}`);
      if (!row.names(line))
        problems.push(
          `the refusal names none of the row's offending entries (${row.offenders}, as displayName prints them)`,
        );
    }
    const changes = listingChanges(dirBefore, await listing(dir));
    if (changes.length) problems.push(`the output's directory changed: ${changes.join("; ")}`);
  }
  const leftInTmp = await readdir(tmp);
  if (leftInTmp.length) problems.push(`left in TMPDIR: ${leftInTmp.join(", ")}`);
  // A relative -o resolved after a chdir lands elsewhere, as the output or as its temp file.
  const stem = base.slice(0, base.indexOf(".") + 1);
  for (const stray of (await readdir("/")).filter((n) => n.includes(stem))) {
    problems.push(`wrote /${stray} (the filesystem root)`);
    await rm(join("/", stray), { recursive: true, force: true });
  }
  if (p.hostPath && (await lstat(p.hostPath)).rdev !== hostBefore)
    problems.push(`${p.hostPath} was replaced`);
  if (/EFBIG|SIGXFSZ/.test(r.stderr))
    problems.push(
      `(EFBIG: the harness caps each file a cell writes at ${FILE_SIZE_LIMIT >> 20} MiB; without it this would fill the disk)`,
    );
  if (problems.length && !r.hung)
    problems.push(`exit ${r.code ?? r.signal}, stderr: ${JSON.stringify(r.stderr.trim().slice(0, 600))}`);
  await rm(cellDir, { recursive: true, force: true });
  return problems;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-matrix-"));
  cli = cliCommand();
  await mkdir(join(work, "sources"));
  await writeFile(
    join(work, "sources", "plain.tar"),
    rawTar([
      { name: "bin/", type: "5", mode: 0o755 },
      { name: "bin/true", body: "#!/bin/sh\n", mode: 0o755 },
    ]),
  );
  for (const [i, row] of HOSTILE_ROWS.entries())
    await writeFile(join(work, "sources", `row${i}.tar`), rawTar(row.tar()));
});

/** CPU seconds of this process and every child it waited for: the matrix's cost whatever else loads the machine. */
function cpuSeconds(): number {
  const fields = readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ");
  // utime, stime, cutime, cstime are fields 14-17, in clock ticks (100 a second on Linux).
  return [11, 12, 13, 14].reduce((a, i) => a + Number(fields[i]), 0) / 100;
}

after(async () => {
  const failed = results.filter((r) => r.problems.length);
  const ms = results.reduce((a, r) => a + r.ms, 0);
  const summary = [
    `hostile matrix: ${results.length} cells, ${failed.length} failed, ${(ms / 1000).toFixed(0)} s of cell time (${(ms / Math.max(1, results.length) / 1000).toFixed(2)} s a cell), ${cpuSeconds().toFixed(0)} CPU s in all${cli[0]?.endsWith(".js") ? "" : "; ran the CLI through tsx (dist/ is older than src/)"}`,
    ...failed.map((r) => `FAIL ${r.label}: ${r.problems.join(" | ")}`),
  ].join("\n");
  if (process.env.MATRIX_REPORT) await writeFile(process.env.MATRIX_REPORT, `${summary}\n`);
  console.log(summary.split("\n")[0]);
  if (work) await rm(work, { recursive: true, force: true });
});

// The --embed column relinks slimroot's kernel for this machine: built (or waited for, when
// `npm test` is building it beside the tests) before the matrix starts.
await slimrootKernel(hostArch());

describe("hostile matrix: rows x writers x output tricks", { concurrency: 2 }, () => {
  for (const [i, row] of HOSTILE_ROWS.entries()) {
    for (const col of COLUMNS) {
      for (const trick of TRICKS) {
        if (row.writersOnly && !trick.writersOnlyRows) continue;
        if (!row.writersOnly && !trick.everyRow && !FULL && !SAMPLE_ROWS.has(row.name)) continue;
        if (col.sampleRowsOnly && !FULL && !SAMPLE_ROWS.has(row.name)) continue;
        const label = `${row.name} x ${col.name} x ${trick.name}`;
        const timeout = 4 * (col.timeoutMs ?? CELL_TIMEOUT_MS);
        test(label, { timeout }, async (t) => {
          const why = col.skip?.();
          if (why) return t.skip(why);
          const started = Date.now();
          const problems = await runCell(row, col, trick, join(work, "sources", `row${i}.tar`)).catch(
            (err: Error) => [`the harness failed: ${err.message}`],
          );
          if (problems.length === 1 && problems[0]!.startsWith("(no input")) return t.skip(problems[0]!);
          results.push({ label, ms: Date.now() - started, problems });
          if (process.env.MATRIX_REPORT)
            await appendFile(
              `${process.env.MATRIX_REPORT}.cells`,
              `${problems.length ? "FAIL" : "ok"} ${label} (${Date.now() - started} ms)${problems.length ? `: ${problems.join(" | ")}` : ""}\n`,
            );
          assert.deepEqual(problems, [], `${label}:\n  ${problems.join("\n  ")}`);
        });
      }
    }
  }
});
