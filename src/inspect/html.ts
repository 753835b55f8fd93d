/**
 * `inspect --html`: one self-contained page (no network, no external files) showing an image
 * as a treemap by directory and file size, coloured by why each file is in, with the totals,
 * and, with --against, what the source image held and what was dropped, largest first.
 */
import { S_IFMT, S_IFREG } from "../cpio/newc.js";
import type { Inspection } from "./inspect.js";
import { WHY_CATEGORIES, whyCategory } from "./why-category.js";

/** A file of the source image the report compares against. */
export interface SourceFile {
  path: string;
  size: number;
}

export interface Against {
  source: string;
  /** Regular files of the source, each hard-linked inode once. */
  files: SourceFile[];
}

/** Tree node in the page's data: name, bytes, category and reason indexes, children. */
interface PageNode {
  n: string;
  s: number;
  c?: number;
  r?: number;
  k?: PageNode[];
}

export interface ReportData {
  file: string;
  compression: string;
  archiveBytes: number;
  contentBytes: number;
  counts: Inspection["counts"];
  app?: string[];
  categories: { id: string; label: string; bytes: number; files: number }[];
  reasons: string[];
  root: PageNode;
  against?: {
    source: string;
    bytes: number;
    files: number;
    dropped: SourceFile[];
    droppedBytes: number;
    droppedFiles: number;
  };
}

/** How many dropped files the page lists (the total counts all of them). */
const DROPPED_LISTED = 200;

/** The numbers and the tree the page draws, from an inspection (with reasons if it had them). */
export function reportData(r: Inspection, against?: Against): ReportData {
  const categories = WHY_CATEGORIES.map((c) => ({ id: c.id, label: c.label, bytes: 0, files: 0 }));
  const reasons: string[] = [];
  const reasonIndex = new Map<string, number>();
  const root: PageNode = { n: "/", s: 0, k: [] };
  const dirs = new Map<string, PageNode>([["", root]]);
  // Missing parents are made top down from a list, not by recursion (any depth).
  const dirNode = (path: string): PageNode => {
    const missing: string[] = [];
    let p = path;
    while (!dirs.has(p)) {
      missing.push(p);
      const cut = p.lastIndexOf("/");
      p = cut < 0 ? "" : p.slice(0, cut);
    }
    let parent = dirs.get(p)!;
    for (const m of missing.reverse()) {
      const node: PageNode = { n: m.slice(m.lastIndexOf("/") + 1), s: 0, k: [] };
      parent.k!.push(node);
      dirs.set(m, node);
      parent = node;
    }
    return parent;
  };
  const counted = new Set<number>();
  const kept = new Set<string>();
  for (const e of r.entries) {
    kept.add(e.path);
    if ((e.mode & S_IFMT) !== S_IFREG || e.size === 0) continue;
    // Hard links share their bytes: the first path carries them, as in inspect's totals.
    if (e.nlink > 1 && counted.has(e.ino)) continue;
    counted.add(e.ino);
    const cat = WHY_CATEGORIES.findIndex((c) => c.id === whyCategory(e.why));
    categories[cat]!.bytes += e.size;
    categories[cat]!.files++;
    let ri: number | undefined;
    if (e.why !== undefined) {
      ri = reasonIndex.get(e.why);
      if (ri === undefined) {
        ri = reasons.push(e.why) - 1;
        reasonIndex.set(e.why, ri);
      }
    }
    const cut = e.path.lastIndexOf("/");
    const leaf: PageNode = { n: e.path.slice(cut + 1), s: e.size, c: cat };
    if (ri !== undefined) leaf.r = ri;
    dirNode(cut < 0 ? "" : e.path.slice(0, cut)).k!.push(leaf);
  }
  sumSizes(root);
  const data: ReportData = {
    file: r.file,
    compression: r.compression,
    archiveBytes: r.archiveBytes,
    contentBytes: r.contentBytes,
    counts: r.counts,
    categories: categories.filter((c) => c.files > 0),
    reasons,
    root,
  };
  if (r.app) data.app = r.app.args;
  if (against) {
    const dropped = against.files
      .filter((f) => !kept.has(f.path))
      .sort((a, b) => b.size - a.size || (a.path < b.path ? -1 : 1));
    data.against = {
      source: against.source,
      bytes: against.files.reduce((n, f) => n + f.size, 0),
      files: against.files.length,
      dropped: dropped.slice(0, DROPPED_LISTED),
      droppedBytes: dropped.reduce((n, f) => n + f.size, 0),
      droppedFiles: dropped.length,
    };
  }
  return data;
}

/** Each directory's size is the sum of its children's, children first (a list, not recursion). */
function sumSizes(root: PageNode): void {
  const order: PageNode[] = [];
  for (const stack = [root]; stack.length; ) {
    const node = stack.pop()!;
    order.push(node);
    for (const k of node.k ?? []) stack.push(k);
  }
  for (const node of order.reverse()) if (node.k) node.s = node.k.reduce((n, k) => n + k.s, 0);
}

/** The page: data as inert JSON, drawn by a small script; `<` is escaped so no tag can end it. */
export function renderHtml(data: ReportData): string {
  const json = JSON.stringify(data).replace(/</g, "\\u003c");
  const title = `slimroot: ${data.file}`.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>${title}</title>
<style>${STYLE}</style></head>
<body><main>
<h1>slimroot image: <span id="file"></span></h1>
<section id="totals"></section>
<section id="against"></section>
<section id="legend"></section>
<div id="map" role="img" aria-label="treemap of the image by directory and file size"></div>
<div id="tip" hidden></div>
<section id="dropped"></section>
</main>
<script type="application/json" id="data">${json}</script>
<script>${SCRIPT}</script>
</body></html>
`;
}

// Colours chosen to stay apart on light and dark backgrounds; one per WHY_CATEGORIES entry.
const COLOURS = [
  "#e6194b",
  "#4363d8",
  "#3cb44b",
  "#f58231",
  "#911eb4",
  "#42d4f4",
  "#bfae2a",
  "#f032e6",
  "#9a9a9a",
];

const STYLE = `
:root{color-scheme:light dark;--bg:#fff;--fg:#222;--line:#ccc}
@media (prefers-color-scheme:dark){:root{--bg:#16181c;--fg:#ddd;--line:#444}}
body{margin:0;font:14px/1.4 system-ui,sans-serif;background:var(--bg);color:var(--fg)}
main{max-width:1200px;margin:0 auto;padding:16px}
h1{font-size:18px;word-break:break-all}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left;border-bottom:1px solid var(--line)}
td.n{text-align:right;font-variant-numeric:tabular-nums}
#legend span.sw{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
#legend div{display:inline-block;margin:0 16px 4px 0}
#map{position:relative;width:100%;height:600px;margin:12px 0;border:1px solid var(--line);overflow:hidden}
#map div{position:absolute;box-sizing:border-box;overflow:hidden;font-size:11px;white-space:nowrap}
#map .d{border:1px solid var(--line)}#map .d>b{font-weight:600;padding:0 2px;display:block;height:14px}
#map .f{border:1px solid var(--bg);color:#fff;padding:0 2px;text-shadow:0 0 2px #000}
#tip{position:fixed;pointer-events:none;background:var(--bg);color:var(--fg);border:1px solid var(--line);padding:4px 8px;max-width:480px;word-break:break-all;box-shadow:0 2px 6px #0004}
`;

const SCRIPT = `
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const COLOURS = ${JSON.stringify(COLOURS)};
const IDS = ${JSON.stringify(WHY_CATEGORIES.map((c) => c.id))};
const fmt = (n) => n >= 1e6 ? (n / 1e6).toFixed(2) + " MB" : n >= 1e3 ? (n / 1e3).toFixed(1) + " kB" : n + " B";
const el = (tag, attrs, text) => { const e = document.createElement(tag); Object.assign(e, attrs || {}); if (text !== undefined) e.textContent = text; return e; };
document.getElementById("file").textContent = D.file;
const t = el("table");
const row = (k, v, id) => { const r = t.insertRow(); r.insertCell().textContent = k; const c = r.insertCell(); c.className = "n"; c.textContent = v; if (id) c.id = id; };
row("archive (" + D.compression + ")", fmt(D.archiveBytes) + " (" + D.archiveBytes + " bytes)", "archive-bytes");
row("file content", fmt(D.contentBytes) + " (" + D.contentBytes + " bytes)", "content-bytes");
row("files", String(D.counts.files), "files");
row("directories, symlinks, other", D.counts.dirs + ", " + D.counts.symlinks + ", " + D.counts.other);
if (D.app) row("runs", JSON.stringify(D.app));
document.getElementById("totals").append(el("h2", {}, "Totals"), t);
if (D.against) {
  const a = D.against, s = document.getElementById("against"), at = el("table");
  const ar = (k, v, id) => { const r = at.insertRow(); r.insertCell().textContent = k; const c = r.insertCell(); c.className = "n"; c.textContent = v; if (id) c.id = id; };
  ar("source " + a.source, fmt(a.bytes) + " in " + a.files + " files", "source-bytes");
  ar("this image", fmt(D.contentBytes) + " in " + D.counts.files + " files (" + (a.bytes ? (100 * D.contentBytes / a.bytes).toFixed(1) : "-") + "% of the source's bytes)");
  ar("dropped", fmt(a.droppedBytes) + " in " + a.droppedFiles + " files", "dropped-bytes");
  s.append(el("h2", {}, "Against the source"), at);
  const d = document.getElementById("dropped"), dt = el("table");
  const h = dt.createTHead().insertRow(); h.append(el("th", {}, "dropped file"), el("th", {}, "bytes"));
  for (const f of a.dropped) { const r = dt.insertRow(); r.insertCell().textContent = "/" + f.path; const c = r.insertCell(); c.className = "n"; c.textContent = String(f.size); }
  d.append(el("h2", {}, "Dropped, largest first" + (a.droppedFiles > a.dropped.length ? " (the " + a.dropped.length + " largest of " + a.droppedFiles + ")" : "")), dt);
}
const lg = document.getElementById("legend");
lg.append(el("h2", {}, "Why each byte is in"));
for (const c of D.categories) {
  const i = IDS.indexOf(c.id), div = el("div");
  div.append(el("span", { className: "sw", style: "background:" + COLOURS[i] }), document.createTextNode(c.label + ": " + fmt(c.bytes) + ", " + c.files + " files"));
  div.dataset.category = c.id;
  lg.append(div);
}
// Squarified treemap (Bruls, Huizing, van Wijk): rows that keep the cells close to square.
function squarify(items, x, y, w, h, out) {
  let i = 0;
  const total = items.reduce((n, it) => n + it.s, 0);
  if (total <= 0) return;
  const scale = (w * h) / total;
  while (i < items.length) {
    const side = Math.min(w, h);
    let row = [], rowSum = 0, best = Infinity;
    while (i < items.length) {
      const a = items[i].s * scale, sum = rowSum + a;
      let mx = 0, mn = Infinity;
      for (const r of row) { mx = Math.max(mx, r); mn = Math.min(mn, r); }
      mx = Math.max(mx, a); mn = Math.min(mn, a);
      const worst = Math.max((side * side * mx) / (sum * sum), (sum * sum) / (side * side * mn));
      if (worst > best) break;
      best = worst; row.push(a); rowSum = sum; i++;
    }
    const thick = rowSum / side;
    let off = 0;
    for (let j = 0; j < row.length; j++) {
      const it = items[i - row.length + j], len = row[j] / thick;
      if (w >= h) out(it, x, y + off, thick, len); else out(it, x + off, y, len, thick);
      off += len;
    }
    if (w >= h) { x += thick; w -= thick; } else { y += thick; h -= thick; }
  }
}
const map = document.getElementById("map"), tip = document.getElementById("tip");
function draw(node, path, x, y, w, h) {
  if (w < 1 || h < 1) return;
  const kids = (node.k || []).filter((k) => k.s > 0).sort((a, b) => b.s - a.s);
  const box = el("div");
  box.style.cssText = "left:" + x + "px;top:" + y + "px;width:" + w + "px;height:" + h + "px";
  if (!node.k) {
    box.className = "f";
    box.style.background = COLOURS[node.c];
    box.dataset.path = path; box.dataset.size = node.s;
    box.dataset.why = node.r === undefined ? "(no .why file)" : D.reasons[node.r];
    if (w > 60 && h > 14) box.textContent = node.n;
    map.append(box);
    return;
  }
  box.className = "d";
  const label = w > 40 && h > 28;
  if (label) box.append(el("b", {}, (path || "/") + " " + fmt(node.s)));
  map.append(box);
  const top = label ? 15 : 1;
  squarify(kids, x + 1, y + top, w - 2, h - top - 1, (k, cx, cy, cw, ch) => draw(k, path + "/" + k.n, cx, cy, cw, ch));
}
function render() { map.textContent = ""; draw(D.root, "", 0, 0, map.clientWidth, map.clientHeight); }
render();
addEventListener("resize", render);
map.addEventListener("mousemove", (ev) => {
  const f = ev.target.closest(".f");
  if (!f) { tip.hidden = true; return; }
  tip.textContent = "";
  tip.append(el("div", {}, f.dataset.path), el("div", {}, fmt(+f.dataset.size) + " (" + f.dataset.size + " bytes)"), el("div", {}, f.dataset.why));
  tip.hidden = false;
  tip.style.left = Math.min(ev.clientX + 12, innerWidth - 490) + "px";
  tip.style.top = ev.clientY + 12 + "px";
});
map.addEventListener("mouseleave", () => { tip.hidden = true; });
`;
