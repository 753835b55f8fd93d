/**
 * The walk of one `slimroot run IMAGE --dry-run` from src/cli to QEMU's argv, counted
 * (docs/architecture.md, "The walk of a run"): node --import tsx scripts/walk.ts [IMAGE] [--steps] [--calls]
 *
 * The command runs in a child whose modules of src/ are loaded through scripts/walk/hook.mjs:
 * each exported function is wrapped, so every call from one module into another is recorded in
 * order with its caller (scripts/walk/record.mjs; calls inside a module are not). Counted:
 * - modules: the modules the run enters;
 * - steps: the distinct caller -> callee module pairs, in the order first taken (a reader
 *   calling a helper once per entry is one step);
 * - the folder walk: the same pairs between folders, each callee folder in that order, and its
 *   re-entries: a folder entered again from another folder (the back and forth);
 * over all of src/ and over the stages alone (without calls into the leaves util/, arch/,
 * guest/, compress/, output/, which everything may call). Methods of returned objects (a
 * launcher's render) are not exports and not counted. Without IMAGE, a busybox initramfs is
 * built first (bin:/bin/busybox, amd64) and run on the fetched kernel.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const LEAVES = new Set(["util", "arch", "guest", "compress", "output"]);
const root = join(import.meta.dirname, "..");
const args = process.argv.slice(2);
const work = mkdtempSync(join(tmpdir(), "slimroot-walk-"));

function slimroot(argv: string[], walk?: string): void {
  execFileSync(
    process.execPath,
    [
      "--import",
      "tsx",
      ...(walk ? ["--import", join(root, "scripts", "walk", "record.mjs")] : []),
      join(root, "src", "cli", "main.ts"),
      ...argv,
    ],
    {
      cwd: root,
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, ...(walk ? { SLIMROOT_WALK_OUT: walk } : {}) },
    },
  );
}

const folderOf = (module: string) => module.split("/")[0]!;

/** Counts of the calls `[caller, callee]` (modules). */
function count(calls: [string, string][]) {
  const firstTaken = <T extends string>(pairs: [T, T][]) => [
    ...new Map(pairs.filter(([a, b]) => a !== b).map(([a, b]) => [`${a} > ${b}`, [a, b] as const])).values(),
  ];
  const steps = firstTaken(calls);
  const folderSteps = firstTaken(calls.map(([a, b]) => [folderOf(a), folderOf(b)]));
  const walk = ["cli", ...folderSteps.map(([, b]) => b)];
  return {
    modules: new Set(calls.flat()).size,
    steps: steps.length,
    stepList: steps.map((p) => p.join(" > ")),
    folderSteps: folderSteps.map((p) => p.join(">")),
    reentries: walk.length - new Set(walk).size,
  };
}

try {
  let image = args.find((a) => !a.startsWith("--"));
  if (!image) {
    image = join(work, "walk.cpio.gz");
    slimroot(["build", "bin:/bin/busybox", "-o", image, "--platform", "linux/amd64", "--", "true"]);
  }
  const out = join(work, "steps.txt");
  slimroot(["run", image, "--dry-run", "-o", join(work, "dry-run")], out);
  const lines = readFileSync(out, "utf8").split("\n").filter(Boolean);
  const calls = lines.map(
    (l) =>
      l
        .split(" ")
        .slice(0, 2)
        .map((m) => m.replace(/\.ts$/, "")) as [string, string],
  );
  if (args.includes("--calls")) console.log(lines.join("\n"));
  const all = count(calls);
  const stages = count(calls.filter(([, callee]) => !LEAVES.has(folderOf(callee))));
  console.log(`calls between modules: ${calls.length}`);
  for (const [what, c] of [
    ["all of src/", all],
    ["stages only", stages],
  ] as const) {
    console.log(
      `${what}: ${c.steps} steps through ${c.modules} modules; ${c.folderSteps.length} folder steps, ${c.reentries} re-entries`,
    );
    console.log(`  folder steps in order: ${c.folderSteps.join(", ")}`);
    if (args.includes("--steps")) console.log(c.stepList.map((step, i) => `  ${i + 1}. ${step}`).join("\n"));
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
