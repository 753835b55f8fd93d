/** A bench report for people: a terminal table, and an SVG chart for a README. */
import { PHASES } from "./phases.js";
import type { BenchReport, BenchRow, BootPhases } from "./schema.js";

const mb = (n: number) => (n / 1e6).toFixed(2);
const s2 = (n: number) => n.toFixed(2);

/** How each hand-made baseline was sized, and why a resume failed, a line each. */
function sizings(r: BenchReport): string[] {
  return [
    ...r.rows.filter((row) => row.sizing).map((row) => `${row.id}: ${row.sizing}`),
    ...r.rows.filter((row) => row.resume?.error).map((row) => `${row.id}: resume ${resumeCell(row)}`),
  ];
}

type Timed = BenchRow & { timeline: BootPhases };
const timedRows = (r: BenchReport) => r.rows.filter((row): row is Timed => row.timeline !== undefined);

/** bench --timeline: a row of ms per timed variant (the phases, then their sum: that boot's ready time). */
function timelineCells(r: BenchReport): { head: string[]; body: string[][]; initcalls: string[] } {
  const rows = timedRows(r);
  return {
    head: ["variant", ...PHASES.map((p) => p.name), "ready"],
    body: rows.map((row) => [
      row.id,
      ...PHASES.map((p) => String(Math.round(row.timeline.phases.find((x) => x.name === p.name)?.ms ?? 0))),
      String(Math.round(row.timeline.readyMs)),
    ]),
    initcalls: rows.map(
      (row) =>
        `${row.id}: slowest initcalls ${row.timeline.slowestInitcalls.map((c) => `${c.name} ${c.ms.toFixed(1)} ms`).join(", ") || "none"}`,
    ),
  };
}

const TIMELINE_TITLE =
  "timeline, ms: one more boot of each variant with run --timeline (it prints every kernel message, so it is slower); run: slimroot run until the VMM started, app to probe: from the app's exec to the first passing probe";

function timelineTable(r: BenchReport): string[] {
  if (!timedRows(r).length) return [];
  const { head, body, initcalls } = timelineCells(r);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ");
  return ["", TIMELINE_TITLE, line(head), ...body.map(line), ...initcalls];
}

const resumed = (r: BenchReport) => r.rows.some((row) => row.resume);
const RESUMED_HEAD = "resumed s (x cold), from standby";

const withRatio = (median: number, ratio: number | null) =>
  `${s2(median)}${ratio === null ? "" : ` (${s2(ratio)}x)`}`;

/**
 * bench --resume's cell: the resumed median and its ratio to the row's cold median, then the
 * same from a standby (timed from its signal), or why not.
 */
export function resumeCell(row: BenchRow): string {
  const res = row.resume;
  if (!res) return "-";
  if (!res.ready) return `failed: ${res.error ?? "not measured"}`;
  const standby = res.standby ? `, standby ${withRatio(res.standby.median, res.standbyToCold)}` : "";
  return `${withRatio(res.ready.median, res.toCold)}${standby}`;
}

export function formatTable(r: BenchReport): string {
  const withResume = resumed(r);
  const head = [
    "variant",
    "file MB",
    "raw MB",
    "build s",
    "ready s min/med/max",
    ...(withResume ? [RESUMED_HEAD] : []),
    "x floor",
    "least RAM MiB",
  ];
  const cells = r.rows.map((row) =>
    row.error && !row.ready
      ? [
          row.id,
          row.bytes ? mb(row.bytes.file) : "-",
          row.bytes ? mb(row.bytes.raw) : "-",
          row.buildSeconds === null ? "-" : s2(row.buildSeconds),
          `failed: ${row.error}`,
          "",
          "",
        ]
      : [
          row.id,
          row.bytes ? mb(row.bytes.file) : "-",
          row.bytes ? mb(row.bytes.raw) : "-",
          row.buildSeconds === null ? "-" : s2(row.buildSeconds),
          row.ready ? `${s2(row.ready.min)} / ${s2(row.ready.median)} / ${s2(row.ready.max)}` : "-",
          row.readyToFloor === null ? "-" : `${s2(row.readyToFloor)}x`,
          row.leastMiB === null ? (row.error ? `failed: ${row.error}` : "-") : String(row.leastMiB),
        ],
  );
  // The resumed column goes after the cold ready time; a failed resume's reason is a line below.
  const body = cells.map((c, i) => {
    const cell = resumeCell(r.rows[i]!);
    return withResume ? [...c.slice(0, 5), cell.startsWith("failed") ? "-" : cell, ...c.slice(5)] : c;
  });
  const widths = head.map((h, i) =>
    Math.max(h.length, ...body.map((b) => (b[i]!.startsWith("failed") ? 0 : b[i]!.length))),
  );
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (c.startsWith("failed") ? c : i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join("  ")
      .trimEnd();
  const out = [line(head), ...body.map(line), ...sizings(r), ...timelineTable(r), ""];
  for (const f of r.floors) {
    out.push(
      "seconds" in f
        ? `floor/${f.kernel} (init only, ends at once): ${s2(f.seconds.min)} / ${s2(f.seconds.median)} / ${s2(f.seconds.max)} s`
        : `floor/${f.kernel}: failed: ${f.error}`,
    );
  }
  if (r.traceSeconds !== undefined) out.push(traceLine(r.traceSeconds));
  if (r.comparisons.length) out.push("");
  for (const c of r.comparisons) {
    const unit = { bytes: " bytes", ready: " s", ram: " MiB", build: " s" }[c.metric];
    const v = (x: number) => (c.metric === "bytes" || c.metric === "ram" ? String(Math.round(x)) : s2(x));
    out.push(
      `${c.metric}: ${c.row} ${v(c.value)}${unit} vs ${c.against} ${v(c.baseline)}${unit} = ${c.ratio.toFixed(3)}x (goal <= ${c.goal.toFixed(3)}x: ${c.met ? "met" : "not met"})`,
    );
  }
  out.push(
    "",
    `${r.host.cpus} CPUs (${r.host.cpuModel}), ${r.host.memGiB} GiB, ${r.host.os}, Node ${r.host.node}, ${r.host.qemu}, -accel ${r.host.accel}; ${r.runs} run(s) each; ${r.date}`,
  );
  return out.join("\n");
}

const esc = (t: string) => t.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * Panels of horizontal bars (file size, median ready time, with --resume the resumed times,
 * least RAM unless none was measured), one bar per row, slimroot's rows and the hand-made
 * routes (when there are any) in two colours. The SVG carries its own background
 * and switches it with prefers-color-scheme, so it reads on light and dark pages.
 */
export function renderSvg(r: BenchReport): string {
  const panels: {
    title: string;
    value: (row: BenchRow) => number | undefined;
    label: (v: number, row: BenchRow) => string;
  }[] = [
    {
      title: "image file (MB)",
      value: (row) => (row.bytes ? row.bytes.file / 1e6 : undefined),
      label: (v) => v.toFixed(2),
    },
    { title: "ready, median (s)", value: (row) => row.ready?.median, label: (v) => v.toFixed(2) },
    // bench --resume: the same row's snapshot resumed, beside its cold boot.
    ...(resumed(r)
      ? [
          {
            title: "resumed, median (s, x cold)",
            value: (row: BenchRow) => row.resume?.ready?.median,
            label: (v: number, row: BenchRow) => withRatio(v, row.resume?.toCold ?? null),
          },
          {
            title: "resumed from standby (s, x cold)",
            value: (row: BenchRow) => row.resume?.standby?.median,
            label: (v: number, row: BenchRow) => withRatio(v, row.resume?.standbyToCold ?? null),
          },
        ]
      : []),
    // --no-ram: no panel of dashes.
    ...(r.rows.some((row) => row.leastMiB != null)
      ? [
          {
            title: "least guest RAM (MiB)",
            value: (row: BenchRow) => row.leastMiB ?? undefined,
            label: String,
          },
        ]
      : []),
  ];
  const labelW = 230;
  const panelW = 230;
  const gap = 20;
  const barH = 16;
  const rowH = 22;
  const top = 58;
  const timed = timedRows(r).length > 0;
  // bench --timeline: one more panel, each timed row's ready time as stacked phases.
  const tlW = 300;
  const width = labelW + panels.length * (panelW + gap) + (timed ? tlW + gap : 0);
  const height = top + r.rows.length * rowH + 30 + (timed ? 20 : 0);
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui,sans-serif" font-size="12">`,
    "<style>.bg{fill:#fff}.fg{fill:#222}.grid{stroke:#ccc}.ours{fill:#2f6fd0}.theirs{fill:#d9822b}.err{fill:#b00020}" +
      (timed ? PHASE_COLOURS.map((c, i) => `.p${i}{fill:${c}}`).join("") : "") +
      "@media (prefers-color-scheme:dark){.bg{fill:#16181c}.fg{fill:#ddd}.grid{stroke:#444}.ours{fill:#5b9bf0}.theirs{fill:#f0a050}.err{fill:#ff6b81}}</style>",
    `<rect class="bg" width="${width}" height="${height}" rx="6"/>`,
    `<text class="fg" x="12" y="20" font-weight="600">${esc(`slimroot bench: ${r.source}`)}</text>`,
    `<text class="fg" x="12" y="36" font-size="11">${esc(`${r.host.cpus} CPUs, ${r.host.qemu}, -accel ${r.host.accel}, ${r.runs} run(s); ${r.date.slice(0, 10)}`)}</text>`,
  );
  r.rows.forEach((row, i) => {
    const y = top + i * rowH;
    parts.push(`<text class="fg" x="12" y="${y + 20}">${esc(row.id)}</text>`);
  });
  panels.forEach((p, pi) => {
    const x0 = labelW + pi * (panelW + gap);
    const values = r.rows.map(p.value);
    const max = Math.max(0, ...values.filter((v): v is number => v !== undefined));
    parts.push(
      `<text class="fg" x="${x0}" y="${top + 2}" font-weight="600">${esc(p.title)}</text>`,
      `<line class="grid" x1="${x0}" x2="${x0}" y1="${top + 6}" y2="${top + r.rows.length * rowH + 6}"/>`,
    );
    values.forEach((v, i) => {
      const y = top + i * rowH + 8;
      const row = r.rows[i]!;
      if (v === undefined) {
        parts.push(`<text class="err" x="${x0 + 4}" y="${y + 12}">${row.error ? "failed" : "-"}</text>`);
        return;
      }
      const w = max > 0 ? Math.max(1, (v / max) * (panelW - 60)) : 1;
      parts.push(
        `<rect class="${row.kind === "slimroot" ? "ours" : "theirs"}" x="${x0}" y="${y}" width="${w.toFixed(1)}" height="${barH}"/>`,
        `<text class="fg" x="${(x0 + w + 4).toFixed(1)}" y="${y + 12}">${esc(p.label(v, row))}</text>`,
      );
    });
  });
  if (timed) parts.push(...timelinePanel(r, labelW + panels.length * (panelW + gap), top, rowH, barH, tlW));
  const ly = height - 10 - (timed ? 20 : 0);
  if (timed)
    PHASES.forEach((p, i) => {
      const x = 12 + i * 110;
      parts.push(
        `<rect class="p${i}" x="${x}" y="${ly + 10}" width="12" height="12"/><text class="fg" x="${x + 16}" y="${ly + 20}">${esc(p.name)}</text>`,
      );
    });
  parts.push(
    `<rect class="ours" x="12" y="${ly - 10}" width="12" height="12"/><text class="fg" x="28" y="${ly}">slimroot</text>`,
    // --no-conventional: no colour to explain.
    ...(r.rows.some((row) => row.kind === "conventional")
      ? [
          `<rect class="theirs" x="100" y="${ly - 10}" width="12" height="12"/><text class="fg" x="116" y="${ly}">hand-made route</text>`,
        ]
      : []),
    "</svg>",
  );
  return `${parts.join("\n")}\n`;
}

/** One colour per phase, mid-tones that read on the light and the dark background. */
const PHASE_COLOURS = ["#8a8f98", "#2f6fd0", "#7b4fc9", "#2a9d8f", "#d9822b", "#c0392b"];

/** Each timed row's ready time as stacked phase segments, on one scale; ms at the end. */
function timelinePanel(
  r: BenchReport,
  x0: number,
  top: number,
  rowH: number,
  barH: number,
  w: number,
): string[] {
  const max = Math.max(0, ...timedRows(r).map((row) => row.timeline.readyMs));
  const scale = max > 0 ? (w - 60) / max : 0;
  const parts = [
    `<text class="fg" x="${x0}" y="${top + 2}" font-weight="600">timeline to first probe (ms)</text>`,
    `<line class="grid" x1="${x0}" x2="${x0}" y1="${top + 6}" y2="${top + r.rows.length * rowH + 6}"/>`,
  ];
  r.rows.forEach((row, i) => {
    const y = top + i * rowH + 8;
    if (!row.timeline) {
      parts.push(`<text class="fg" x="${x0 + 4}" y="${y + 12}">-</text>`);
      return;
    }
    let x = x0;
    for (const p of row.timeline.phases) {
      const sw = p.ms * scale;
      const k = PHASES.findIndex((q) => q.name === p.name);
      parts.push(
        `<rect class="p${k}" x="${x.toFixed(1)}" y="${y}" width="${sw.toFixed(1)}" height="${barH}"><title>${esc(`${p.name}: ${Math.round(p.ms)} ms`)}</title></rect>`,
      );
      x += sw;
    }
    parts.push(
      `<text class="fg" x="${(x + 4).toFixed(1)}" y="${y + 12}">${Math.round(row.timeline.readyMs)}</text>`,
    );
  });
  return parts;
}

/** What the trace rows' build time leaves out. */
function traceLine(seconds: number): string {
  return `trace: the profile was recorded in ${s2(seconds)} s (slimroot trace: one boot with the probes), once for every trace row; their build s leave it out`;
}

/** The same numbers as a markdown table (for a README), with the floors and comparisons. */
export function formatMarkdown(r: BenchReport): string {
  const ready = (row: BenchRow) =>
    row.ready ? `${s2(row.ready.min)} / ${s2(row.ready.median)} / ${s2(row.ready.max)}` : "-";
  // bench --resume: one more column after the cold ready time.
  const res = (row: BenchRow) =>
    resumed(r) ? ` ${resumeCell(row).startsWith("failed") ? "-" : resumeCell(row)} |` : "";
  const out = [
    `| variant | file MB | raw MB | build s | ready s (min / median / max) |${resumed(r) ? ` ${RESUMED_HEAD} |` : ""} x floor | least RAM MiB |`,
    `|---|---:|---:|---:|---:|${resumed(r) ? "---:|" : ""}---:|---:|`,
    ...r.rows.map((row) =>
      row.error && !row.ready
        ? `| ${row.id} | ${row.bytes ? mb(row.bytes.file) : "-"} | ${row.bytes ? mb(row.bytes.raw) : "-"} | ${row.buildSeconds === null ? "-" : s2(row.buildSeconds)} | failed: ${row.error.replace(/\|/g, "\\|")} |${res(row)} | |`
        : `| ${row.id} | ${row.bytes ? mb(row.bytes.file) : "-"} | ${row.bytes ? mb(row.bytes.raw) : "-"} | ${row.buildSeconds === null ? "-" : s2(row.buildSeconds)} | ${ready(row)} |${res(row)} ${row.readyToFloor === null ? "-" : `${s2(row.readyToFloor)}x`} | ${row.leastMiB ?? (row.error ? `failed: ${row.error.replace(/\|/g, "\\|")}` : "-")} |`,
    ),
    "",
    ...sizings(r).map((l) => `- ${l}`),
  ];
  if (timedRows(r).length) {
    const { head, body, initcalls } = timelineCells(r);
    out.push(
      "",
      `${TIMELINE_TITLE}:`,
      "",
      `| ${head.join(" | ")} |`,
      `|---|${head
        .slice(1)
        .map(() => "---:|")
        .join("")}`,
      ...body.map((b) => `| ${b.join(" | ")} |`),
      "",
      ...initcalls.map((l) => `- ${l}`),
      "",
    );
  }
  for (const f of r.floors)
    out.push(
      "seconds" in f
        ? `- floor/${f.kernel} (slimroot's init alone, ends the VM at once): ${s2(f.seconds.min)} / ${s2(f.seconds.median)} / ${s2(f.seconds.max)} s`
        : `- floor/${f.kernel}: failed: ${f.error}`,
    );
  if (r.traceSeconds !== undefined) out.push(`- ${traceLine(r.traceSeconds)}`);
  out.push("");
  if (r.comparisons.length) {
    out.push(
      "| measure | best slimroot variant | hand-made route | ratio | goal | met |",
      "|---|---|---|---:|---:|---|",
    );
    for (const c of r.comparisons) {
      const v = (x: number) => (c.metric === "bytes" || c.metric === "ram" ? String(Math.round(x)) : s2(x));
      const unit = { bytes: "bytes", ready: "s", ram: "MiB", build: "s" }[c.metric];
      out.push(
        `| ${c.metric} (${unit}) | ${c.row}: ${v(c.value)} | ${c.against}: ${v(c.baseline)} | ${c.ratio.toFixed(3)}x | <= ${c.goal.toFixed(3)}x | ${c.met ? "yes" : "no"} |`,
      );
    }
  }
  return out.join("\n");
}
