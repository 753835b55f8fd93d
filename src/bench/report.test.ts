import assert from "node:assert/strict";
import { test } from "node:test";
import { Ajv } from "ajv";
import { formatMarkdown, formatTable, renderSvg } from "./report.js";
import { BENCH_JSON_SCHEMA, BENCH_SCHEMA_ID, type BenchReport, type BenchRow } from "./schema.js";

const report: BenchReport = {
  schema: BENCH_SCHEMA_ID,
  date: "2026-11-29T00:00:00.000Z",
  host: { cpus: 2, cpuModel: "cpu", memGiB: 24, os: "Debian", node: "v20", qemu: "QEMU 7.2", accel: "tcg" },
  source: "oci:<x>",
  probes: ["http:80/"],
  runs: 1,
  memMiB: null,
  floors: [{ kernel: "debian", seconds: { min: 2, median: 2, max: 2, runs: [2] } }],
  rows: [
    {
      id: "trace/cpio/debian",
      kind: "slimroot",
      level: "trace",
      format: "cpio",
      kernel: "debian",
      bytes: { file: 4_000_000, raw: 10_000_000 },
      buildSeconds: 1.5,
      ready: { min: 2.5, median: 2.5, max: 2.5, runs: [2.5] },
      readyToFloor: 1.25,
      leastMiB: 80,
    },
    {
      id: "hand-made ext4/debian",
      kind: "conventional",
      level: "none",
      format: "ext4",
      kernel: "debian",
      bytes: null,
      buildSeconds: null,
      ready: null,
      readyToFloor: null,
      leastMiB: null,
      sizing: "ext4 of 300 MiB, sized to the tree",
      error: "a | b",
    },
  ],
  comparisons: [],
};

test("markdown, table and svg carry the measured values; errors stay in their row", () => {
  const md = formatMarkdown(report);
  assert.match(
    md,
    /^\| trace\/cpio\/debian \| 4\.00 \| 10\.00 \| 1\.50 \| 2\.50 \/ 2\.50 \/ 2\.50 \| 1\.25x \| 80 \|$/m,
  );
  assert.match(md, /^\| hand-made ext4\/debian \| - \| - \| - \| failed: a \\\| b \| \| \|$/m);
  assert.match(md, /floor\/debian .*: 2\.00 \/ 2\.00 \/ 2\.00 s/);
  // How the baselines were sized: said under the table, in both forms.
  assert.match(md, /^- hand-made ext4\/debian: ext4 of 300 MiB, sized to the tree$/m);
  assert.match(formatTable(report), /^hand-made ext4\/debian: ext4 of 300 MiB, sized to the tree$/m);
  assert.match(
    formatTable(report),
    /trace\/cpio\/debian\s+4\.00\s+10\.00\s+1\.50\s+2\.50 \/ 2\.50 \/ 2\.50\s+1\.25x\s+80/,
  );
  const svg = renderSvg(report);
  assert.match(svg, /oci:&#60;x&#62;/);
  assert.doesNotMatch(svg, /oci:<x>/);
  assert.match(svg, /least guest RAM/);
  assert.match(svg, />hand-made route</);
});

test("a traced level: the profile's recording time is said once, below the floors, and is valid JSON", () => {
  const traced: BenchReport = { ...report, traceSeconds: 12.345 };
  const said = /trace: the profile was recorded in 12\.35 s .*their build s leave it out/;
  assert.match(formatTable(traced), said);
  assert.match(formatMarkdown(traced), said);
  assert.doesNotMatch(formatTable(report), /profile was recorded/);
  const validate = new Ajv({ allErrors: true }).compile(BENCH_JSON_SCHEMA);
  assert.ok(validate(traced), JSON.stringify(validate.errors));
});

test("svg: --no-ram leaves out the RAM panel, --no-conventional the hand-made route's colour", () => {
  const ours = report.rows
    .filter((row) => row.kind === "slimroot")
    .map((row) => ({ ...row, leastMiB: null }));
  const svg = renderSvg({ ...report, rows: ours });
  assert.doesNotMatch(svg, /least guest RAM/);
  assert.doesNotMatch(svg, /hand-made route/);
  assert.match(svg, /ready, median \(s\)/);
  // Narrower by the panel it left out.
  const width = (x: string) => Number(/<svg [^>]*width="(\d+)"/.exec(x)![1]);
  assert.equal(width(renderSvg(report)) - width(svg), 250);
});

test("bench --resume: a resumed column beside the cold ready time, its ratio, then from a standby; a failed resume said below", () => {
  const [ours, handmade] = report.rows as [BenchRow, BenchRow];
  const withResume: BenchReport = {
    ...report,
    rows: [
      {
        ...ours,
        resume: {
          bytes: 4_200_000,
          ready: { min: 0.5, median: 0.6, max: 0.7, runs: [0.5, 0.6, 0.7] },
          toCold: 0.24,
          standby: { min: 0.1, median: 0.12, max: 0.2, runs: [0.1, 0.12, 0.2] },
          standbyToCold: 0.048,
        },
      },
      {
        ...ours,
        id: "trace/erofs/debian",
        resume: {
          bytes: null,
          ready: null,
          toCold: null,
          standby: null,
          standbyToCold: null,
          error: "no answer",
        },
      },
      handmade,
    ],
  };
  const validate = new Ajv({ allErrors: true }).compile(BENCH_JSON_SCHEMA);
  assert.ok(validate(withResume), JSON.stringify(validate.errors));
  const table = formatTable(withResume);
  assert.match(table, /^variant .*ready s min\/med\/max\s+resumed s \(x cold\), from standby\s+x floor/m);
  assert.match(
    table,
    /^trace\/cpio\/debian\s+4\.00\s+10\.00\s+1\.50\s+2\.50 \/ 2\.50 \/ 2\.50\s+0\.60 \(0\.24x\), standby 0\.12 \(0\.05x\)\s+1\.25x\s+80$/m,
  );
  assert.match(table, /^trace\/erofs\/debian .*2\.50\s+-\s+1\.25x\s+80$/m);
  assert.match(table, /^trace\/erofs\/debian: resume failed: no answer$/m);
  const md = formatMarkdown(withResume);
  assert.match(
    md,
    /^\| trace\/cpio\/debian \| 4\.00 \| 10\.00 \| 1\.50 \| 2\.50 \/ 2\.50 \/ 2\.50 \| 0\.60 \(0\.24x\), standby 0\.12 \(0\.05x\) \| 1\.25x \| 80 \|$/m,
  );
  assert.match(md, /^\| hand-made ext4\/debian \| - \| - \| - \| failed: a \\\| b \| - \| \| \|$/m);
  const svg = renderSvg(withResume);
  assert.match(svg, /resumed, median \(s, x cold\)/);
  assert.match(svg, />0\.60 \(0\.24x\)</);
  assert.match(svg, /resumed from standby \(s, x cold\)/);
  assert.match(svg, />0\.12 \(0\.05x\)</);
  // Without --resume nothing changes: no column, no panel.
  assert.doesNotMatch(formatTable(report), /resumed/);
  assert.doesNotMatch(renderSvg(report), /resumed/);
});
