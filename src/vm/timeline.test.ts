import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import fc from "fast-check";
import { GuestReport } from "./report.js";
import {
  buildTimeline,
  type ConsoleLine,
  describeTimeline,
  initcalls,
  resumeTimeline,
  type Timeline,
  type TimelineInput,
  timelineCmdline,
} from "./timeline.js";

/**
 * Captured by `run --timeline` of a busybox image (`sh -c 'echo hi'`) under TCG: the console
 * lines with their host arrival times, the init's SLIMROOT_TIME values and when the report came
 * (initcalls under 1 ms and all but the first "calling" line left out, to keep them small).
 */
const capture = (name: string): TimelineInput =>
  JSON.parse(readFileSync(new URL(`../../test/fixtures/timeline-${name}.json`, import.meta.url), "utf8"));

function assertWhole(tl: Timeline): void {
  let at = 0;
  for (const s of tl.segments) {
    assert.equal(s.startMs, at, `${s.what} starts where the one before ended`);
    assert.ok(s.ms >= 0, `${s.what}: ${s.ms} ms`);
    at += s.ms;
  }
  assert.ok(Math.abs(at - tl.totalMs) < 1e-6, `segments sum to ${at}, total ${tl.totalMs}`);
}

describe("timeline", () => {
  test("the command line: timestamps, initcall times, every level shown; quiet goes", () => {
    const c = timelineCmdline("console=ttyS0 reboot=t panic=-1 quiet loglevel=3");
    assert.equal(c, "console=ttyS0 reboot=t panic=-1 printk.time=1 initcall_debug ignore_loglevel");
    assert.equal(timelineCmdline(c), c);
  });

  test("initcall lines: name without offsets, module in brackets, bare addresses kept", () => {
    const lines: ConsoleLine[] = [
      "[    0.861195] calling  xen_pvh_gnttab_setup+0x0/0x38 @ 1",
      "[    1.000000] initcall crypto_algapi_init+0x0/0x15 returned 0 after 528800 usecs",
      "[    3.455148] initcall virtio_mmio_init+0x0/0x1000 [virtio_mmio] returned 0 after 66426 usecs",
      "[    0.300000] initcall 0xffffffff80d17667 returned 0 after 200700 usecs",
      "[    3.074636] initcall balloon_wait_finish+0x0/0xed returned -19 after 9 usecs",
      "initcall fake_from_the_app returned 0 after 99999999 usecs",
    ].map((text) => ({ hostMs: 0, text }));
    assert.deepEqual(initcalls(lines), [
      { name: "crypto_algapi_init", ms: 528.8 },
      { name: "0xffffffff80d17667", ms: 200.7 },
      { name: "virtio_mmio_init [virtio_mmio]", ms: 66.426 },
      { name: "balloon_wait_finish", ms: 0.009 },
    ]);
  });

  test("Debian's kernel: every step, in order, summing to the total, its slowest initcall named", () => {
    const tl = buildTimeline(capture("debian-amd64"));
    assertWhole(tl);
    assert.deepEqual(
      tl.segments.map((s) => s.what),
      [
        "VMM start until the kernel's setup code ran",
        "kernel decompression, until the kernel's clock ran",
        "kernel early boot (until the first initcall)",
        "initcalls (with the initramfs unpacked)",
        "freeing init memory, starting /init",
        "init: mounts, modules, network, until the app started",
        "the app, until it exited",
        "the init's report, until the host read it",
      ],
    );
    // Host clock where a line marks it; the init's own clock for its differences.
    assert.equal(tl.segments[0]!.clock, "host");
    assert.equal(tl.segments[5]!.clock, "guest");
    assert.ok(Math.abs(tl.segments[5]!.ms - (5217705 - 4632646) / 1000) < 1e-6);
    assert.equal(tl.initcalls[0]!.name, "crypto_algapi_init");
    // The least delayed line: the kernel's clock ran at 1830 ms of the host's.
    assert.equal(Math.round(tl.offsetMs!), 1830);
    const text = describeTimeline(tl).join("\n");
    assert.match(text, /total 8750 ms .*segments sum to 8750 ms/);
    assert.match(text, /slowest initcalls .*: crypto_algapi_init 528\.8 ms, /);
  });

  test("slimroot's kernel: no setup-code marker, initcalls by address (no kallsyms)", () => {
    const tl = buildTimeline(capture("slimroot-amd64"));
    assertWhole(tl);
    assert.equal(
      tl.segments[0]!.what,
      "VMM start, kernel load and decompression, until the kernel's clock ran",
    );
    assert.equal(tl.segments.length, 7);
    assert.match(tl.initcalls[0]!.name, /^0x[0-9a-f]+$/);
    // Named from its vmlinux (kernel/symbols.ts): the slowest is pty_init.
    const named = buildTimeline({
      ...capture("slimroot-amd64"),
      symbols: new Map([[0xffffffff80d17667n, "pty_init"]]),
    });
    assert.equal(named.initcalls[0]!.name, "pty_init");
  });

  test("run --probe: the app's segment is cut where the probe first passed", () => {
    const input = capture("debian-amd64");
    const plain = buildTimeline(input);
    const app = plain.segments.find((s) => s.id === "app")!;
    const readyMs = app.startMs + app.ms / 4;
    const tl = buildTimeline({ ...input, readyMs });
    assertWhole(tl);
    assert.equal(tl.totalMs, plain.totalMs);
    assert.deepEqual(
      tl.segments.slice(-3).map((s) => [s.id, s.what, s.clock]),
      [
        ["probe", "the app, until the probe first passed", "host"],
        ["app", "the app, serving, until it exited", "guest"],
        ["report", "the init's report, until the host read it", "host+guest"],
      ],
    );
    const probe = tl.segments.find((s) => s.id === "probe")!;
    assert.ok(Math.abs(probe.startMs + probe.ms - readyMs) < 1e-6);
    // A probe that passed before the init's "app" mark (two clocks): a segment of 0, never negative.
    const early = buildTimeline({ ...input, readyMs: 1 });
    assertWhole(early);
    assert.equal(early.segments.find((s) => s.id === "probe")!.ms, 0);
  });

  test("a console without kernel lines: VMM start to the report, one segment", () => {
    const tl = buildTimeline({ lines: [{ hostMs: 10, text: "hi" }], initTimes: {}, endMs: 900 });
    assert.deepEqual(tl.segments, [
      {
        id: "report",
        what: "the init's report, until the host read it",
        startMs: 0,
        ms: 900,
        clock: "host+guest",
      },
    ]);
    assert.match(describeTimeline(tl).join("\n"), /no timestamped kernel line/);
  });

  test("whatever the console and the init said, the segments are in order and sum to the total", () => {
    const line = fc.oneof(
      fc.constantFrom(
        "Probing EDD (edd=off to disable)... ok",
        "Run /init as init process",
        "calling  foo+0x0/0x10 @ 1",
        "Freeing unused kernel image (initmem) memory: 2612K",
        "initcall foo+0x0/0x10 returned 0 after 5 usecs",
        "hi",
      ),
      fc.string(),
    );
    const stamped = fc
      .tuple(fc.boolean(), fc.integer({ min: 0, max: 9_999_999 }), line)
      .map(([stamp, us, text]) =>
        stamp
          ? `[${String(Math.floor(us / 1e6)).padStart(5)}.${String(us % 1e6).padStart(6, "0")}] ${text}`
          : text,
      );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.double({ min: 0, max: 20_000, noNaN: true }), stamped)),
        fc.dictionary(fc.constantFrom("init", "app", "exit"), fc.integer({ min: 1, max: 2 ** 32 - 1 })),
        fc.double({ min: 0, max: 20_000, noNaN: true }),
        fc.option(fc.double({ min: -1000, max: 30_000, noNaN: true }), { nil: undefined }),
        (ls, initTimes, endMs, readyMs) => {
          const lines = ls.map(([hostMs, text]) => ({ hostMs, text })).sort((a, b) => a.hostMs - b.hostMs);
          assertWhole(
            buildTimeline({ lines, initTimes, endMs, ...(readyMs === undefined ? {} : { readyMs }) }),
          );
        },
      ),
    );
  });

  test("the init's times count only after this boot's key, as the rest of its report", () => {
    const r = new GuestReport("ab".repeat(16));
    r.scan(
      `SLIMROOT_TIME init 1\nSLIMROOT_REPORT ${"ab".repeat(16)}\nSLIMROOT_TIME init 42\nSLIMROOT_TIME app 50\n`,
    );
    assert.deepEqual(r.times, { init: 42, app: 50 });
  });
});

describe("resume timeline", () => {
  const marks = { run: 400, spawned: 450, vmmUp: 700, checked: 650, loaded: 1000, resumed: 1100 };

  test("slimroot's steps before QEMU, then QEMU's and the guest's, summing to the total; checks beside QEMU's start", () => {
    const tl = resumeTimeline(marks);
    assertWhole(tl);
    assert.equal(tl.totalMs, 650);
    assert.deepEqual(
      tl.segments.map((s) => [s.id, s.ms]),
      [
        ["vmm", 250],
        // The checks were done before QEMU was up: QEMU waited for nothing.
        ["checks", 0],
        ["load", 300],
        ["reseed", 100],
      ],
    );
    // Before QEMU: from the process's start, ending where QEMU was spawned.
    assert.deepEqual(
      tl.before!.map((s) => [s.id, s.startMs, s.ms]),
      [
        ["cli", -450, 400],
        ["prepare", -50, 50],
      ],
    );
    const text = describeTimeline(tl).join("\n");
    assert.match(text, /^resume timeline/);
    assert.match(text, /total 1100 ms from slimroot's start \(450 ms before QEMU, 650 ms after\)/);
  });

  test("checks slower than QEMU's start are a segment of their own", () => {
    const tl = resumeTimeline({ ...marks, checked: 900 });
    assertWhole(tl);
    assert.deepEqual(
      tl.segments.map((s) => s.ms),
      [250, 200, 100, 100],
    );
  });

  test("a standby's wait is a segment of its own; the resume's cost is what follows the signal", () => {
    const tl = resumeTimeline({ ...marks, go: 5000, resumed: 5080 });
    assertWhole(tl);
    assert.deepEqual(
      tl.segments.map((s) => [s.id, s.ms]),
      [
        ["vmm", 250],
        ["checks", 0],
        ["load", 300],
        ["standby", 4000],
        ["reseed", 80],
      ],
    );
    const text = describeTimeline(tl).join("\n");
    assert.match(text, /standing by, loaded and paused, until SIGUSR2/);
    assert.match(text, /from SIGUSR2 until the app continued: 80 ms$/m);
    // Without a standby, no such line.
    assert.doesNotMatch(describeTimeline(resumeTimeline(marks)).join("\n"), /SIGUSR2/);
  });

  test("run --probe: the probe's wait after the app continued is the last segment, and in the total", () => {
    const tl = resumeTimeline({ ...marks, go: 5000, resumed: 5080, ready: 5130 });
    assertWhole(tl);
    assert.deepEqual(
      tl.segments.slice(-2).map((s) => [s.id, s.ms]),
      [
        ["reseed", 80],
        ["probe", 50],
      ],
    );
    const text = describeTimeline(tl).join("\n");
    assert.match(text, /the probe passed at its end/);
    assert.match(text, /from SIGUSR2 until the probe passed: 130 ms$/m);
  });
});
