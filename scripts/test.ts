// `npm test` (`make test`): every test file through node:test's runner, one file at a time,
// with what the tests need from an empty cache made beside them from the start. On a fresh machine
// slimroot's two kernels are some 19 minutes of both cores and the test images (test/fixtures)
// some 6 minutes of downloads and dpkg; the tests, one file at a time and mostly one TCG
// thread, leave a core idle most of the time. So the kernels compile at the lowest priority and
// take what the tests leave, and the images are built ahead of the tests that use them. Both
// caches hold a lock while they build (src/kernel/build.ts, test/support/fixtures.ts): a test
// that gets there first waits, or builds it itself when the job here failed, so the jobs move
// only time. The files that boot slimroot's kernels run last. A warm cache makes both jobs end
// in seconds. `npm test -- WORD...` runs only the files whose path holds one of the words.
import { type ChildProcess, spawn } from "node:child_process";
import { openSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { constants as osConstants, tmpdir } from "node:os";
import { join, relative } from "node:path";
import { pipeline } from "node:stream/promises";
import { run } from "node:test";
import { spec, tap } from "node:test/reporters";
import { REPO } from "../test/support/cli.js";
import { hostArch } from "../test/support/kernel.js";

/** The files that need slimroot's kernels, in the order they need them (host's first). */
const NEED_KERNELS = [
  "test/file-caps.test.ts",
  "test/hostile-matrix.test.ts",
  "test/push-forms.test.ts",
  "test/kernel-build.test.ts",
  "test/memory-boot.test.ts",
];

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(".test.ts"))
    .map((e) => relative(REPO, join(e.parentPath, e.name)));
}

const all = [...testFiles(join(REPO, "src")), ...testFiles(join(REPO, "test"))].sort();
for (const f of NEED_KERNELS)
  if (!all.includes(f)) throw new Error(`${f}: named in scripts/test.ts, not found`);
const words = process.argv.slice(2);
const chosen = (f: string) => words.length === 0 || words.some((w) => f.includes(w));
const files = [...all.filter((f) => !NEED_KERNELS.includes(f)), ...NEED_KERNELS].filter(chosen);
if (files.length === 0) {
  process.stderr.write(`npm test: no test file's path holds ${words.map((w) => `"${w}"`).join(" or ")}\n`);
  process.exit(2);
}

/** A shell command line run beside the tests in its own process group, its output in a log. */
class Job {
  private readonly started = Date.now();
  private readonly log: string;
  private readonly child: ChildProcess;
  private exit: string | undefined;

  constructor(
    readonly name: string,
    script: string,
    priority: string[],
  ) {
    this.log = join(tmpdir(), `slimroot-test-${name.replace(/\W+/g, "-")}-${process.pid}.log`);
    const out = openSync(this.log, "a");
    // "$0" is this Node: the jobs run the repository's TypeScript as the tests do.
    this.child = spawn(priority[0]!, [...priority.slice(1), "sh", "-c", script, process.execPath], {
      cwd: REPO,
      detached: true,
      stdio: ["ignore", out, out],
    });
    this.child.on("exit", (code, signal) => {
      this.exit = `${signal ?? `exit ${code}`} after ${Math.round((Date.now() - this.started) / 1000)} s`;
    });
  }

  /** Ends the job's whole group (sh, node, make, the compilers) if it still runs. */
  stop(): void {
    if (this.exit !== undefined || !this.child.pid) return;
    try {
      process.kill(-this.child.pid, "SIGTERM");
    } catch {
      // already gone
    }
  }

  /** One line for the end of the run; a failed job's log is kept and its last lines shown. */
  report(): string {
    const exit = this.exit ?? "still running: stopped";
    const failed = this.exit !== undefined && !this.exit.startsWith("exit 0");
    if (!failed) {
      rmSync(this.log, { force: true });
      return `${this.name}, made beside the tests: ${exit}\n`;
    }
    const tail = readFileSync(this.log, "utf8").trim().split("\n").slice(-5).join("\n");
    return `${this.name}, made beside the tests: ${exit} (log: ${this.log})\n${tail}\n`;
  }
}

const host = hostArch();
const tsx = `"$0" --import tsx`;
const jobs: Job[] = [];
if (files.some((f) => NEED_KERNELS.includes(f)))
  jobs.push(
    new Job(
      "slimroot's kernels",
      [host, host === "amd64" ? "arm64" : "amd64"]
        .map((arch) => `${tsx} src/cli/main.ts kernel build --arch ${arch}`)
        .join(" && "),
      // The job's own session is its own autogroup, which Linux shares the CPU with the
      // tests' as an equal whatever this nice says: the kernels are not starved of CPU.
      ["nice", "-n", "19", "ionice", "-c", "2", "-n", "7"],
    ),
  );
if (files.some((f) => f.startsWith("test/")))
  jobs.push(
    new Job(
      "the test images",
      `${tsx} test/support/fixtures.ts --build-all >/dev/null && ${tsx} test/support/corpus.ts --build-all`,
      ["nice", "-n", "5"],
    ),
  );

// node:test's run(), not `node --test FILES`: the command line sorts the files by name, and
// the files that need the kernels must come last. Each file runs in a child with this
// process's flags (tsx), one at a time, reported as TAP (the spec reporter on a terminal).
const abort = new AbortController();
const stream = run({ files, concurrency: 1, signal: abort.signal });
let failed = false;
stream.on("test:fail", () => {
  failed = true;
});
const stopJobs = () => {
  for (const j of jobs) j.stop();
};
let signalled: NodeJS.Signals | undefined;
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const)
  process.on(signal, () => {
    signalled = signal;
    stopJobs();
    abort.abort();
  });
await pipeline(stream.compose(process.stdout.isTTY ? new spec() : tap), process.stdout, { end: false });
const reports = jobs.map((j) => j.report());
stopJobs();
process.stderr.write(reports.join(""));
process.exit(signalled ? 128 + osConstants.signals[signalled] : failed ? 1 : 0);
