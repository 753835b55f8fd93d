// `make bench-build`: what the whole-image build costs against the work it cannot avoid.
// Times `slimroot build oci:<nginx> --minimize none -o x.cpio.gz` against a shell pipeline that
// decompresses the same layer blobs and recompresses them at slimroot's gzip level on every
// core, as issue 17 measured it (`zcat LAYERS | pigz -6 -b 128 > FILE`: pigz's default block
// size, written out), in paired runs that alternate which goes first, so load from other work
// on the machine falls on both alike.
// Prints each pair, the medians, their ratio, slimroot's peak RSS and the load average.
//   node --import tsx scripts/bench-build.ts [--runs N] [--tree fixture|issue | --source OCI-LAYOUT-DIR] [--cli MAIN.JS]
// --tree fixture (the default): the test suite's nginx. --tree issue: the tree issue 17 measured
// on, Debian's nginx from `mmdebstrap --variant=apt` in one layer (test/fixtures/bench-tree.sh,
// built once and cached beside the test fixtures; needs root, mmdebstrap, umoci, Debian's mirror).
// Needs pigz and GNU time (/usr/bin/time); the built CLI (dist/cli/main.js).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO } from "../test/support/cli.js";
import {
  cachedDir,
  hash,
  MIRROR,
  nginxFixture,
  runFixtureScript,
  SOURCE_DATE_EPOCH,
  SUITE,
} from "../test/support/fixtures.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    tree: { type: "string", default: "fixture" },
    source: { type: "string" },
    cli: { type: "string" },
  },
});
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs ${values.runs}: a positive integer`);
for (const tool of ["/usr/bin/time", "pigz", "zcat"])
  if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is needed`);

if (values.tree !== "fixture" && values.tree !== "issue")
  throw new Error(`--tree ${values.tree}: fixture or issue`);

/** The OCI layout of issue 17's tree, built by test/fixtures/bench-tree.sh once per recipe. */
async function issueTree(): Promise<string> {
  const script = join(REPO, "test", "fixtures", "bench-tree.sh");
  const env = { FIXTURE_SUITE: SUITE, FIXTURE_MIRROR: MIRROR, SOURCE_DATE_EPOCH: String(SOURCE_DATE_EPOCH) };
  const key = hash(JSON.stringify(env), readFileSync(script));
  const dir = await cachedDir(
    "bench-debian-nginx",
    key,
    (tmp) => runFixtureScript(script, [tmp], tmp, env),
    env,
  );
  return join(dir, "oci");
}

const layout =
  values.source ?? (values.tree === "issue" ? await issueTree() : (await nginxFixture()).ociLayout);
const layers = layerBlobs(layout);
const main = values.cli ?? join(REPO, "dist", "cli", "main.js");
if (!existsSync(main)) throw new Error(`${main} is missing: npm run build first`);
const work = mkdtempSync(join(tmpdir(), "slimroot-bench-build-"));

/** The layer blobs of the layout's first manifest, in order (the fixture has one platform). */
function layerBlobs(dir: string): string[] {
  const blob = (digest: string) => join(dir, "blobs", ...digest.split(":"));
  const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8"));
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0].digest), "utf8"));
  return manifest.layers.map((l: { digest: string }) => blob(l.digest));
}

/**
 * Wall seconds, CPU seconds (user + system, of every process it waited for) and peak RSS (KiB,
 * of the largest process: GNU time's %M) of one command.
 */
function timed(argv: string[]): { seconds: number; cpu: number; rssKiB: number } {
  const report = join(work, "time.txt");
  const start = process.hrtime.bigint();
  const r = spawnSync("/usr/bin/time", ["-f", "%M %U %S", "-o", report, ...argv], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: exit ${r.status}`);
  const [rss, user, sys] = readFileSync(report, "utf8").trim().split("\n").pop()!.split(" ").map(Number);
  return { seconds, cpu: user! + sys!, rssKiB: rss! };
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const baselineCmd = `zcat ${layers.map(quote).join(" ")} | pigz -6 -b 128 > ${quote(join(work, "baseline.gz"))}`;
const slimroot = () =>
  timed([
    process.execPath,
    main,
    "build",
    `oci:${layout}`,
    "--minimize",
    "none",
    "-o",
    join(work, "x.cpio.gz"),
  ]);
const baseline = () => timed(["sh", "-c", baselineCmd]);

const loadavg = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const layerBytes = layers.reduce((n, f) => n + statSync(f).size, 0);
console.log(`source: oci:${layout} (${layers.length} layers, ${layerBytes} bytes compressed)`);
console.log(`baseline: ${baselineCmd}`);
console.log(`load average before: ${loadavg()}`);
// One untimed run each: page cache and the fixture's first-use costs out of the way.
slimroot();
baseline();
const s: number[] = [];
const b: number[] = [];
const rss: number[] = [];
const sCpu: number[] = [];
const bCpu: number[] = [];
const loads: string[] = [];
for (let i = 0; i < runs; i++) {
  const pair = i % 2 === 0 ? [slimroot, baseline] : [baseline, slimroot];
  const [first, second] = pair.map((f) => f());
  const sr = i % 2 === 0 ? first! : second!;
  const bl = i % 2 === 0 ? second! : first!;
  s.push(sr.seconds);
  b.push(bl.seconds);
  rss.push(sr.rssKiB);
  sCpu.push(sr.cpu);
  bCpu.push(bl.cpu);
  loads.push(loadavg());
  console.log(
    `pair ${i + 1}: slimroot ${sr.seconds.toFixed(2)} s (CPU ${sr.cpu.toFixed(2)} s, peak RSS ${(sr.rssKiB / 1024).toFixed(0)} MiB), ` +
      `baseline ${bl.seconds.toFixed(2)} s (CPU ${bl.cpu.toFixed(2)} s), ratio ${(sr.seconds / bl.seconds).toFixed(2)}; load ${loads.at(-1)}`,
  );
}
const out = statSync(join(work, "x.cpio.gz")).size;
const ratio = median(s) / median(b);
console.log(
  `median of ${runs} paired runs: slimroot ${median(s).toFixed(2)} s, baseline ${median(b).toFixed(2)} s, ratio ${ratio.toFixed(2)}x; ` +
    `CPU ${median(sCpu).toFixed(2)} s against ${median(bCpu).toFixed(2)} s (${(median(sCpu) / median(bCpu)).toFixed(2)}x); ` +
    `slimroot peak RSS ${(Math.max(...rss) / 1024).toFixed(0)} MiB (max), output ${out} bytes; load average after: ${loadavg()}`,
);
rmSync(work, { recursive: true, force: true });
