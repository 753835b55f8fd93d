/**
 * `slimroot bench` on the busybox image (httpd serving /etc): one run per variant, the JSON
 * checked against its schema, every ratio recomputed from the values it printed; and a Ctrl-C
 * in the middle leaves no QEMU behind.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Ajv } from "ajv";
import { BENCH_JSON_SCHEMA, type BenchReport } from "../src/bench/schema.js";
import { runCli, startCli } from "./support/cli.js";
import { busyboxFixture } from "./support/fixtures.js";

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-bench-test-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const HTTPD = ["--", "/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/etc"];

test("bench: one run per variant, JSON valid against its schema, ratios from the printed values", async () => {
  const bb = await busyboxFixture("amd64");
  const json = join(work, "bench.json");
  const svg = join(work, "bench.svg");
  const r = await runCli([
    "bench",
    bb.ociRef,
    "--probe",
    "http:80/passwd",
    "--variants",
    "static",
    "--runs",
    "1",
    "--json",
    json,
    "--svg",
    svg,
    ...HTTPD,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(await readFile(json, "utf8")) as BenchReport;
  const validate = new Ajv({ allErrors: true }).compile(BENCH_JSON_SCHEMA);
  assert.ok(validate(report), JSON.stringify(validate.errors));

  const ours = report.rows.find((x) => x.id === "static/cpio/debian")!;
  const handmade = report.rows.find((x) => x.id === "hand-made initramfs/debian")!;
  const disk = report.rows.find((x) => x.id === "hand-made ext4/debian")!;
  for (const row of [ours, handmade]) {
    assert.equal(row.error, undefined, `${row.id}: ${row.error}`);
    assert.equal(row.ready!.runs.length, 1);
    assert.ok(row.leastMiB! > 8 && row.leastMiB! <= 256, `${row.id}: least RAM ${row.leastMiB}`);
    assert.ok(row.bytes!.raw >= row.bytes!.file);
  }
  // The hand-made initramfs gets the memory run would give its files, and says so.
  assert.match(handmade.sizing ?? "", /^booted with \d+ MiB: slimroot run's memory rule/);
  // Debian's kernel has virtio_blk as a module: that route is a row with its reason.
  assert.match(disk.error ?? "", /virtio_blk as a module/);

  const floor = report.floors.find((f) => f.kernel === "debian");
  assert.ok(floor && "seconds" in floor, JSON.stringify(floor));
  for (const row of [ours, handmade])
    assert.equal(row.readyToFloor, row.ready!.median / floor.seconds.median);
  const value = (id: string, metric: string) => {
    const row = report.rows.find((x) => x.id === id)!;
    return { bytes: row.bytes?.file, ready: row.ready?.median, ram: row.leastMiB, build: row.buildSeconds }[
      metric
    ];
  };
  assert.equal(report.comparisons.length, 4);
  for (const c of report.comparisons) {
    assert.equal(c.value, value(c.row, c.metric));
    assert.equal(c.baseline, value(c.against, c.metric));
    assert.equal(c.ratio, c.value / c.baseline);
    assert.equal(c.met, c.ratio <= c.goal);
  }
  // The table prints what the JSON holds.
  assert.match(r.stdout, new RegExp(`static/cpio/debian\\s+${(ours.bytes!.file / 1e6).toFixed(2)}`));
  assert.match(r.stdout, new RegExp(`\\s${ours.leastMiB}\\n`));
  const chart = await readFile(svg, "utf8");
  assert.match(chart, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(chart, /prefers-color-scheme:dark/);
  assert.equal((chart.match(/class="ours"/g) ?? []).length, 3 + 1); // 3 panels + legend
});

test("bench --timeline --resume: each slimroot row's boot cut into phases up to the first probe, and its snapshot resumed beside it, also from a standby, in the JSON, table and SVG", async () => {
  const bb = await busyboxFixture("amd64");
  const json = join(work, "bench-timeline.json");
  const svg = join(work, "bench-timeline.svg");
  const r = await runCli([
    "bench",
    bb.ociRef,
    "--probe",
    "http:80/passwd",
    "--variants",
    "static",
    "--runs",
    "1",
    "--no-ram",
    "--no-conventional",
    "--timeline",
    "--resume",
    "--json",
    json,
    "--svg",
    svg,
    ...HTTPD,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(await readFile(json, "utf8")) as BenchReport;
  const validate = new Ajv({ allErrors: true }).compile(BENCH_JSON_SCHEMA);
  assert.ok(validate(report), JSON.stringify(validate.errors));
  const row = report.rows.find((x) => x.id === "static/cpio/debian")!;
  assert.equal(row.error, undefined, row.error);
  const tl = row.timeline!;
  assert.deepEqual(
    tl.phases.map((p) => p.name),
    ["run", "kernel", "initcalls", "root ready", "init", "app to probe"],
  );
  // Every phase was seen (the kernel's lines, the init's marks, the probe) and they sum to that boot's ready time.
  for (const p of tl.phases) assert.ok(p.ms > 0, `${p.name}: ${p.ms} ms`);
  const sum = tl.phases.reduce((n, p) => n + p.ms, 0);
  assert.ok(Math.abs(sum - tl.readyMs) < 1, `phases sum to ${sum}, ready ${tl.readyMs}`);
  assert.match(tl.slowestInitcalls[0]?.name ?? "", /^[a-z_]\w*/);
  const ms = tl.phases.map((p) => String(Math.round(p.ms))).join("\\s+");
  assert.match(r.stdout, new RegExp(`^static/cpio/debian\\s+${ms}\\s+${Math.round(tl.readyMs)}$`, "m"));
  assert.equal(((await readFile(svg, "utf8")).match(/<rect class="p\d"[^>]*><title>/g) ?? []).length, 6);
  // --resume: the row's snapshot, resumed as often as it was booted (it answered the probes),
  // its ratio to the same row's cold boots of this run.
  const res = row.resume!;
  assert.equal(res.error, undefined, res.error);
  assert.ok(res.bytes! > 0);
  assert.equal(res.ready!.runs.length, 1);
  assert.equal(res.toCold, res.ready!.median / row.ready!.median);
  // Then from a standby, timed from its signal.
  assert.equal(res.standby!.runs.length, 1);
  assert.equal(res.standbyToCold, res.standby!.median / row.ready!.median);
  assert.match(
    r.stdout,
    new RegExp(
      `^static/cpio/debian .*\\s${res.ready!.median.toFixed(2)} \\(${res.toCold!.toFixed(2)}x\\), standby ${res.standby!.median.toFixed(2)} \\(${res.standbyToCold!.toFixed(2)}x\\)\\s`,
      "m",
    ),
  );
  assert.match(await readFile(svg, "utf8"), /resumed, median \(s, x cold\)/);
  assert.match(await readFile(svg, "utf8"), /resumed from standby \(s, x cold\)/);
});

/** Processes under `root` (by parent pid), read from /proc. */
function descendants(root: number): Map<number, string> {
  const parent = new Map<number, number>();
  const name = new Map<number, string>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      parent.set(Number(d), Number(stat.slice(close + 2).split(" ")[1]));
      name.set(Number(d), stat.slice(stat.indexOf("(") + 1, close));
    } catch {
      // Gone meanwhile.
    }
  }
  const out = new Map<number, string>();
  for (const pid of parent.keys()) {
    for (let p: number | undefined = pid, hops = 0; p && p > 1 && hops < 64; p = parent.get(p), hops++) {
      if (p === root) {
        out.set(pid, name.get(pid)!);
        break;
      }
    }
  }
  return out;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test("bench: Ctrl-C in the middle stops every VM, exit 130", async () => {
  const bb = await busyboxFixture("amd64");
  const cli = startCli([
    "bench",
    bb.ociRef,
    "--probe",
    "http:80/passwd",
    "--variants",
    "none",
    "--runs",
    "3",
    "--no-ram",
    ...HTTPD,
  ]);
  const pid = cli.child.pid!;
  const qemus = new Set<number>();
  const deadline = Date.now() + 300_000;
  // Wait until a variant's VM is up, noting every QEMU bench started.
  while (!(qemus.size > 0 && /none\/cpio\/debian: boot/.test(cli.stderr))) {
    assert.ok(Date.now() < deadline, `no VM started: ${cli.stderr}`);
    for (const [p, n] of descendants(pid)) if (n.startsWith("qemu-system")) qemus.add(p);
    await new Promise((r) => setTimeout(r, 100));
  }
  process.kill(pid, "SIGINT");
  assert.equal(await cli.exited, 130);
  assert.match(cli.stderr, /stopping the VMs/);
  const gone = Date.now() + 10_000;
  while ([...qemus].some(alive) && Date.now() < gone) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual([...qemus].filter(alive), []);
});
