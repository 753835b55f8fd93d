import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { Ajv } from "ajv";
import { buildTimeline, type TimelineInput } from "../vm/timeline.js";
import { bootPhases, PHASES } from "./phases.js";
import { formatMarkdown, formatTable, renderSvg } from "./report.js";
import { BENCH_JSON_SCHEMA, BENCH_SCHEMA_ID, type BenchReport, type BenchRow } from "./schema.js";

/** The busybox boot `run --timeline` captured (src/vm/timeline.test.ts), as run hands it to bench. */
const input: TimelineInput = JSON.parse(
  readFileSync(new URL("../../test/fixtures/timeline-slimroot-amd64.json", import.meta.url), "utf8"),
);
const START = 1_700_000_000_000;
const tl = { ...buildTimeline(input), vmmStartEpochMs: START + 180 };
/** The probe passed 200 ms after the app's exec (on the host clock). */
const appAt = tl.segments.filter((s) => s.id !== "app" && s.id !== "report").reduce((n, s) => n + s.ms, 0);
const READY = START + 180 + appAt + 200;

const row = (id: string, extra: Partial<BenchRow>): BenchRow => ({
  id,
  kind: "slimroot",
  level: "none",
  format: "cpio",
  kernel: "slimroot",
  bytes: { file: 1e6, raw: 2e6 },
  buildSeconds: 1,
  ready: { min: 1.5, median: 1.5, max: 1.5, runs: [1.5] },
  readyToFloor: null,
  leastMiB: null,
  ...extra,
});

const report = (rows: BenchRow[]): BenchReport => ({
  schema: BENCH_SCHEMA_ID,
  date: "2026-12-03T00:00:00.000Z",
  host: { cpus: 2, cpuModel: "cpu", memGiB: 24, os: "Debian", node: "v20", qemu: "QEMU 7.2", accel: "tcg" },
  source: "oci:x",
  probes: ["http:80/"],
  runs: 1,
  memMiB: null,
  floors: [],
  rows,
  comparisons: [],
});

test("bench's phases are the timeline's segments, from starting run to the first probe, summing to it", () => {
  const p = bootPhases(tl, START, READY, 3);
  assert.deepEqual(
    p.phases.map((x) => x.name),
    PHASES.map((x) => x.name),
  );
  assert.ok(Math.abs(p.readyMs - (180 + appAt + 200)) < 1e-3);
  const ms = Object.fromEntries(p.phases.map((x) => [x.name, x.ms]));
  assert.ok(Math.abs(ms.run! - 180) < 1e-3);
  const seg = (id: string) => tl.segments.find((s) => s.id === id)?.ms ?? 0;
  assert.ok(Math.abs(ms.kernel! - (seg("setup") + seg("decompress") + seg("early"))) < 1e-3);
  assert.equal(ms.initcalls, seg("initcalls"));
  assert.equal(ms["root ready"], seg("to-init"));
  assert.equal(ms.init, seg("init"));
  assert.ok(Math.abs(ms["app to probe"]! - 200) < 1e-3);
  const sum = p.phases.reduce((n, x) => n + x.ms, 0);
  assert.ok(Math.abs(sum - p.readyMs) < 1e-3, `${sum} vs ${p.readyMs}`);
  assert.deepEqual(p.slowestInitcalls, tl.initcalls.slice(0, 3));
  assert.throws(() => bootPhases({ ...tl, vmmStartEpochMs: undefined }, START, READY), /no VMM start time/);
});

test("bench --timeline: the phases in the JSON (schema-valid), the table, the markdown and the SVG's stacked bars", () => {
  const timeline = bootPhases(tl, START, READY);
  const r = report([row("none/cpio/slimroot", { timeline }), row("none/erofs/slimroot", {})]);
  const validate = new Ajv({ allErrors: true }).compile(BENCH_JSON_SCHEMA);
  assert.ok(validate(JSON.parse(JSON.stringify(r))), JSON.stringify(validate.errors));
  const ms = timeline.phases.map((x) => String(Math.round(x.ms)));
  const cells = `none/cpio/slimroot\\s+${ms.join("\\s+")}\\s+${Math.round(timeline.readyMs)}`;
  const table = formatTable(r);
  assert.match(table, /^variant\s+run\s+kernel\s+initcalls\s+root ready\s+init\s+app to probe\s+ready$/m);
  assert.match(table, new RegExp(`^${cells}$`, "m"));
  assert.match(table, /^none\/cpio\/slimroot: slowest initcalls \w+ \d+\.\d ms/m);
  assert.match(
    formatMarkdown(r),
    new RegExp(`^\\| none/cpio/slimroot \\| ${ms.join(" \\| ")} \\| \\d+ \\|$`, "m"),
  );
  const svg = renderSvg(r);
  const bars = [
    ...svg.matchAll(/<rect class="p(\d)" x="([\d.]+)" y="\d+" width="([\d.]+)" height="\d+"><title>/g),
  ];
  assert.deepEqual(
    bars.map((b) => Number(b[1])),
    [0, 1, 2, 3, 4, 5],
  );
  // Stacked: each starts where the one before ended; widths in proportion to the ms.
  for (let i = 1; i < bars.length; i++)
    assert.ok(Math.abs(Number(bars[i]![2]) - Number(bars[i - 1]![2]) - Number(bars[i - 1]![3])) < 0.11);
  const scale = Number(bars[1]![3]) / timeline.phases[1]!.ms;
  for (const [i, b] of bars.entries())
    assert.ok(Math.abs(Number(b[3]) - timeline.phases[i]!.ms * scale) < 0.2, `phase ${i}`);
  assert.match(svg, /<title>kernel: \d+ ms<\/title>/);
});

test("without --timeline bench's outputs are as before: no timeline table, panel or colours", () => {
  const r = report([row("none/cpio/slimroot", {})]);
  assert.doesNotMatch(formatTable(r), /timeline/);
  assert.doesNotMatch(formatMarkdown(r), /timeline/);
  assert.doesNotMatch(renderSvg(r), /timeline|\.p0\{/);
});
