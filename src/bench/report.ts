/** A bench report for people: a terminal table, and an SVG chart for a README. */
import type { BenchReport, BenchRow } from "./schema.js";

const mb = (n: number) => (n / 1e6).toFixed(2);
const s2 = (n: number) => n.toFixed(2);

/** How each hand-made baseline was sized, a line each. */
function sizings(r: BenchReport): string[] {
  return r.rows.filter((row) => row.sizing).map((row) => `${row.id}: ${row.sizing}`);
}

export function formatTable(r: BenchReport): string {
  const head = ["variant", "file MB", "raw MB", "build s", "ready s min/med/max", "x floor", "least RAM MiB"];
  const body = r.rows.map((row) =>
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
  const widths = head.map((h, i) =>
    Math.max(h.length, ...body.map((b) => (b[i]!.startsWith("failed") ? 0 : b[i]!.length))),
  );
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (c.startsWith("failed") ? c : i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join("  ")
      .trimEnd();
  const out = [line(head), ...body.map(line), ...sizings(r), ""];
  for (const f of r.floors) {
    out.push(
      "seconds" in f
        ? `floor/${f.kernel} (init only, ends at once): ${s2(f.seconds.min)} / ${s2(f.seconds.median)} / ${s2(f.seconds.max)} s`
        : `floor/${f.kernel}: failed: ${f.error}`,
    );
  }
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
 * Three panels of horizontal bars (file size, median ready time, least RAM), one bar per row,
 * slimroot's rows and the hand-made routes in two colours. The SVG carries its own background
 * and switches it with prefers-color-scheme, so it reads on light and dark pages.
 */
export function renderSvg(r: BenchReport): string {
  const panels: {
    title: string;
    value: (row: BenchRow) => number | undefined;
    label: (v: number) => string;
  }[] = [
    {
      title: "image file (MB)",
      value: (row) => (row.bytes ? row.bytes.file / 1e6 : undefined),
      label: (v) => v.toFixed(2),
    },
    { title: "ready, median (s)", value: (row) => row.ready?.median, label: (v) => v.toFixed(2) },
    { title: "least guest RAM (MiB)", value: (row) => row.leastMiB ?? undefined, label: (v) => String(v) },
  ];
  const labelW = 230;
  const panelW = 230;
  const gap = 20;
  const barH = 16;
  const rowH = 22;
  const top = 58;
  const width = labelW + panels.length * (panelW + gap);
  const height = top + r.rows.length * rowH + 30;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui,sans-serif" font-size="12">`,
    "<style>.bg{fill:#fff}.fg{fill:#222}.grid{stroke:#ccc}.ours{fill:#2f6fd0}.theirs{fill:#d9822b}.err{fill:#b00020}" +
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
        `<text class="fg" x="${(x0 + w + 4).toFixed(1)}" y="${y + 12}">${esc(p.label(v))}</text>`,
      );
    });
  });
  const ly = height - 10;
  parts.push(
    `<rect class="ours" x="12" y="${ly - 10}" width="12" height="12"/><text class="fg" x="28" y="${ly}">slimroot</text>`,
    `<rect class="theirs" x="100" y="${ly - 10}" width="12" height="12"/><text class="fg" x="116" y="${ly}">hand-made route</text>`,
    "</svg>",
  );
  return `${parts.join("\n")}\n`;
}

/** The same numbers as a markdown table (for a README), with the floors and comparisons. */
export function formatMarkdown(r: BenchReport): string {
  const ready = (row: BenchRow) =>
    row.ready ? `${s2(row.ready.min)} / ${s2(row.ready.median)} / ${s2(row.ready.max)}` : "-";
  const out = [
    "| variant | file MB | raw MB | build s | ready s (min / median / max) | x floor | least RAM MiB |",
    "|---|---:|---:|---:|---:|---:|---:|",
    ...r.rows.map((row) =>
      row.error && !row.ready
        ? `| ${row.id} | ${row.bytes ? mb(row.bytes.file) : "-"} | ${row.bytes ? mb(row.bytes.raw) : "-"} | ${row.buildSeconds === null ? "-" : s2(row.buildSeconds)} | failed: ${row.error.replace(/\|/g, "\\|")} | | |`
        : `| ${row.id} | ${row.bytes ? mb(row.bytes.file) : "-"} | ${row.bytes ? mb(row.bytes.raw) : "-"} | ${row.buildSeconds === null ? "-" : s2(row.buildSeconds)} | ${ready(row)} | ${row.readyToFloor === null ? "-" : `${s2(row.readyToFloor)}x`} | ${row.leastMiB ?? (row.error ? `failed: ${row.error.replace(/\|/g, "\\|")}` : "-")} |`,
    ),
    "",
    ...sizings(r).map((l) => `- ${l}`),
  ];
  for (const f of r.floors)
    out.push(
      "seconds" in f
        ? `- floor/${f.kernel} (slimroot's init alone, ends the VM at once): ${s2(f.seconds.min)} / ${s2(f.seconds.median)} / ${s2(f.seconds.max)} s`
        : `- floor/${f.kernel}: failed: ${f.error}`,
    );
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
