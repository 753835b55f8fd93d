// `npm test` (`make test`): every test file in one `node --test` run, one file at a time, with
// slimroot's two kernels compiled beside it. On a fresh machine those builds are some 19 minutes
// of both cores; the tests, one file at a time and mostly one TCG thread, leave a core idle
// most of the time, so the builds run from the start at the lowest priority and take what the
// tests leave. The test files that boot those kernels run last; they ask the kernel cache for
// them (src/kernel/build.ts), which waits on the build's lock, so the order moves only time.
// A warm cache finds both kernels in a second. A failed build here is reported at the end; the
// tests that need the kernel then build it themselves and fail with the build's own message.
import { type ChildProcess, spawn } from "node:child_process";
import { openSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { REPO } from "../test/support/cli.js";

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
// `npm test -- WORD...`: only the files whose path holds one of the words.
const words = process.argv.slice(2);
const chosen = (f: string) => words.length === 0 || words.some((w) => f.includes(w));
const files = [...all.filter((f) => !NEED_KERNELS.includes(f)), ...NEED_KERNELS].filter(chosen);

/** `kernel build` for each architecture, the host's first, at the lowest CPU and I/O priority. */
function startKernels(log: string): ChildProcess {
  const host = process.arch === "arm64" ? "arm64" : "amd64";
  const builds = [host, host === "amd64" ? "arm64" : "amd64"].map(
    (arch) => `"$0" --import tsx src/cli/main.ts kernel build --arch ${arch}`,
  );
  const lowest = ["nice", "-n", "19", "ionice", "-c", "2", "-n", "7"];
  return spawn(lowest[0]!, [...lowest.slice(1), "sh", "-c", builds.join(" && "), process.execPath], {
    cwd: REPO,
    // Its own process group, so it can be ended whole (sh, node, make and the compilers).
    detached: true,
    stdio: ["ignore", openSync(log, "a"), openSync(log, "a")],
  });
}

const started = Date.now();
const log = join(tmpdir(), `slimroot-test-kernels-${process.pid}.log`);
const kernels = files.some((f) => NEED_KERNELS.includes(f)) ? startKernels(log) : undefined;
let kernelsExit: string | undefined;
kernels?.on("exit", (code, signal) => {
  kernelsExit = `${signal ?? `exit ${code}`} after ${Math.round((Date.now() - started) / 1000)} s`;
});
const endKernels = () => {
  if (kernelsExit === undefined && kernels?.pid) {
    try {
      process.kill(-kernels.pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
};

const tests = spawn(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=1", ...files], {
  cwd: REPO,
  stdio: "inherit",
});
// The builds have their own group: a signal to us ends them, and reaches the test runner too.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const)
  process.on(signal, () => {
    endKernels();
    tests.kill(signal);
  });
const code: number = await new Promise((resolve) =>
  tests.on("close", (c, signal) => resolve(c ?? (signal ? 128 : 1))),
);
const report = kernelsExit ?? "still running: stopped";
endKernels();
const failed = kernelsExit !== undefined && !kernelsExit.startsWith("exit 0");
if (kernels && !failed) rmSync(log, { force: true });
if (kernels)
  process.stderr.write(
    `slimroot's kernels, built beside the tests: ${report}${failed ? ` (log: ${log})` : ""}\n` +
      (failed ? `${readFileSync(log, "utf8").trim().split("\n").slice(-5).join("\n")}\n` : ""),
  );
process.exit(code);
