// Benchmark for disk roots on Debian's nginx image: whole (--minimize none) and minimized
// (--minimize trace) as initramfs (cpio.gz), ext4, erofs and squashfs. Per image: its bytes,
// the build time, the time from `slimroot run` to the first HTTP 200 (median of --runs rounds,
// each round booting every image once), and
// the least guest RAM at which it still serves the page (bisected; every step is a boot
// proven by a request). Prints a markdown table and the goals.
// Usage: node --import tsx scripts/bench-disk.ts [--runs N] (default 5)
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { fetchKernel } from "../src/kernel/fetch.js";
import { freePort } from "../src/util/net.js";
import { REPO } from "../test/support/cli.js";
import { nginxFixture } from "../test/support/fixtures.js";

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf("--runs") + 1]) || 5;
const cli = existsSync(join(REPO, "dist", "cli", "main.js"))
  ? [join(REPO, "dist", "cli", "main.js")]
  : ["--import", "tsx", join(REPO, "src", "cli", "main.ts")];
const work = mkdtempSync(join(tmpdir(), "slimroot-bench-disk-"));
const FORMATS = [
  { format: "initramfs", ext: "cpio.gz" },
  { format: "ext4", ext: "ext4" },
  { format: "erofs", ext: "erofs" },
  { format: "squashfs", ext: "sqfs" },
] as const;

function slimroot(argv: string[]): void {
  const r = spawnSync(process.execPath, [...cli, ...argv], { cwd: REPO, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`slimroot ${argv.join(" ")}: ${r.stderr.trim()}`);
}

function seconds(f: () => void): number {
  const t = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * Boots `image` with `mem` MiB and polls nginx's page through a forwarded port: the seconds
 * from the start of `slimroot run` to the first 200 with the welcome page, or undefined
 * when it never came (within 60 s, or the VM ended). The VM is stopped either way.
 */
async function firstOk(image: string, mem: number): Promise<number | undefined> {
  const port = await freePort();
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, [...cli, "run", image, "--mem", String(mem), "-p", `${port}:80`], {
    cwd: REPO,
    stdio: ["ignore", "ignore", "ignore"],
  });
  const exited = new Promise<void>((r) => child.on("close", () => r()));
  let at: number | undefined;
  const deadline = Date.now() + 60_000;
  while (at === undefined && Date.now() < deadline && child.exitCode === null) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200 && (await res.text()).includes("Welcome to nginx"))
        at = Number(process.hrtime.bigint() - started) / 1e9;
    } catch {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  child.kill("SIGTERM");
  const kill = setTimeout(() => child.kill("SIGKILL"), 20_000);
  await exited;
  clearTimeout(kill);
  return at;
}

/** Least RAM (MiB) that still serves, bisected on [32, 256]. */
async function leastRam(image: string): Promise<number> {
  let lo = 32;
  let hi = 256;
  if ((await firstOk(image, hi)) === undefined)
    throw new Error(`${image} does not serve even with ${hi} MiB`);
  if ((await firstOk(image, lo)) !== undefined) return lo;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if ((await firstOk(image, mid)) !== undefined) hi = mid;
    else lo = mid;
  }
  return hi;
}

interface Row {
  content: string;
  format: string;
  bytes: number;
  build: number;
  ready: number;
  ram: number;
}

try {
  const kernel = await fetchKernel({ arch: "amd64" });
  const nginx = await nginxFixture();
  const profile = join(work, "nginx.profile");
  slimroot(["trace", nginx.ociRef, "--probe", "http:80/", "-o", profile]);
  const contents = [
    { content: "whole", flags: ["--minimize", "none"] },
    { content: "minimized", flags: ["--minimize", "trace", "--profile", profile, "--no-verify"] },
  ];
  // Builds first; then the boots interleaved (one round = every image once), so a load
  // change on the (shared) machine hits every image alike; then the RAM bisections.
  const images: { content: string; format: string; out: string; build: number }[] = [];
  for (const { content, flags } of contents) {
    for (const { format, ext } of FORMATS) {
      const out = join(work, `${content}.${ext}`);
      const build = seconds(() => slimroot(["build", nginx.ociRef, ...flags, "-o", out]));
      images.push({ content, format, out, build });
    }
  }
  const times = new Map<string, number[]>(images.map((i) => [i.out, []]));
  for (let round = 0; round < runs; round++) {
    for (const { out } of images) {
      const t = await firstOk(out, 256);
      if (t === undefined) throw new Error(`${out} did not serve with 256 MiB`);
      times.get(out)!.push(t);
    }
  }
  const rows: Row[] = [];
  for (const { content, format, out, build } of images) {
    const ram = await leastRam(out);
    const row = { content, format, bytes: statSync(out).size, build, ready: median(times.get(out)!), ram };
    process.stderr.write(`${JSON.stringify({ ...row, times: times.get(out) })}\n`);
    rows.push(row);
  }

  const cpu = execFileSync("sh", ["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"])
    .toString()
    .trim();
  const mb = (n: number) => `${(n / 1e6).toFixed(2)} MB`;
  const get = (content: string, format: string) =>
    rows.find((r) => r.content === content && r.format === format)!;
  const disks = ["ext4", "erofs", "squashfs"];
  const smallest = (content: string) =>
    disks.reduce((a, b) => (get(content, a).bytes <= get(content, b).bytes ? a : b));
  const slowdown = (content: string, format: string) =>
    (get(content, format).ready / get(content, "initramfs").ready - 1) * 100;
  const worst = Math.max(...["whole", "minimized"].flatMap((c) => disks.map((f) => slowdown(c, f))));
  const met = (ok: boolean) => (ok ? "met" : "**not met**");
  const lines = [
    `Machine: ${cpus().length} cores (${cpu}), ${Math.round(totalmem() / 1024 / 1024 / 1024)} GiB, Node ${process.version}, QEMU TCG, kernel ${kernel.manifest.version}; ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC; time to 200: median of ${runs} interleaved rounds.`,
    "",
    "| nginx (Debian 12) | format | image | build | `run` to first HTTP 200 | least RAM serving |",
    "|---|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${r.content} | ${r.format} | ${mb(r.bytes)} | ${r.build.toFixed(1)} s | ${r.ready.toFixed(2)} s (${slowdown(r.content, r.format) >= 0 ? "+" : ""}${slowdown(r.content, r.format).toFixed(0)}%) | ${r.ram} MiB |`,
    ),
    "",
    "| goal | measured | |",
    "|---|---|---|",
    `| whole nginx from erofs in no more RAM than the minimized initramfs (80 MiB) | ${get("whole", "erofs").ram} MiB vs ${get("minimized", "initramfs").ram} MiB | ${met(get("whole", "erofs").ram <= Math.min(80, get("minimized", "initramfs").ram))} |`,
    `| erofs the smallest disk format | smallest: whole ${smallest("whole")}, minimized ${smallest("minimized")} | ${met(smallest("whole") === "erofs" && smallest("minimized") === "erofs")} |`,
    `| a disk root adds at most 15% to the time to first 200 | worst +${worst.toFixed(0)}% | ${met(worst <= 15)} |`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
