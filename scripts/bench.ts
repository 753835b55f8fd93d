// `make bench`: the README's performance section, as one `slimroot bench` run on Debian's nginx
// (built from Debian packages, cached). Any arguments replace the default matrix options, e.g.
//   node --import tsx scripts/bench.ts --runs 1 --kernels debian
// Writes bench/nginx.json, docs/bench-nginx.svg and bench/nginx.md (the README's tables).
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatMarkdown } from "../src/bench/report.js";
import type { BenchReport } from "../src/bench/schema.js";
import { REPO } from "../test/support/cli.js";
import { nginxFixture } from "../test/support/fixtures.js";

const nginx = await nginxFixture();
const given = process.argv.slice(2);
const defaults = [
  "--variants",
  "none,trace",
  "--formats",
  "cpio,ext4,erofs,squashfs,embedded",
  "--kernels",
  "debian,slimroot",
  "--runs",
  "3",
];
mkdirSync(join(REPO, "bench"), { recursive: true });
const args = [
  join(REPO, "dist", "cli", "main.js"),
  "bench",
  nginx.ociRef,
  "--probe",
  "http:80/",
  ...(given.length ? given : defaults),
  "--json",
  join(REPO, "bench", "nginx.json"),
  "--svg",
  join(REPO, "docs", "bench-nginx.svg"),
];
process.stderr.write(`$ slimroot ${args.slice(1).join(" ")}\n`);
const r = spawnSync(process.execPath, args, { stdio: "inherit" });
process.exitCode = r.status ?? 1;
if (r.status === 0) {
  const report = JSON.parse(readFileSync(join(REPO, "bench", "nginx.json"), "utf8")) as BenchReport;
  writeFileSync(join(REPO, "bench", "nginx.md"), `${formatMarkdown(report)}\n`);
}
