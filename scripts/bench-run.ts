// Benchmark for `slimroot run`: time from starting the command to nginx's first HTTP 200,
// against the floor of the same kernel and VMM booting an image that holds only our init
// (its app is missing, so the init reports at once), N times each in one run on one machine.
// Prints a markdown table. Usage: node --import tsx scripts/bench-run.ts [--runs N]
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fetchKernel } from "../src/kernel/fetch.js";
import { freePort } from "../src/util/net.js";
import { chooseAccel, chooseMachine, hostTscKhz } from "../src/vm/qemu.js";
import { REPO } from "../test/support/cli.js";
import { nginxFixture } from "../test/support/fixtures.js";

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf("--runs") + 1]) || 5;

// The installed form when it is built (dist/), else the sources through tsx.
const dist = join(REPO, "dist", "cli", "main.js");
const cli = existsSync(join(REPO, "dist", "vm", "run.js"))
  ? [dist]
  : ["--import", "tsx", join(REPO, "src", "cli", "main.ts")];
const DEADLINE_MS = 60_000;
const work = mkdtempSync(join(tmpdir(), "slimroot-bench-run-"));

function slimroot(argv: string[]): string {
  return execFileSync(process.execPath, [...cli, ...argv], { cwd: REPO, encoding: "utf8" });
}

/**
 * Starts `slimroot run ARGV`; resolves with the seconds until `ready` says so (it is polled
 * every 20 ms and sees the console text), then stops the VM and waits for it to end.
 */
async function timeRun(
  argv: string[],
  ready: (console: string) => Promise<boolean> | boolean,
): Promise<number> {
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, [...cli, "run", ...argv], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d;
  });
  child.stderr.on("data", (d: Buffer) => {
    out += d;
  });
  const closed = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
  const deadline = Date.now() + DEADLINE_MS;
  try {
    for (;;) {
      if (await ready(out)) return Number(process.hrtime.bigint() - started) / 1e9;
      if (child.exitCode !== null) throw new Error(`slimroot run ended (${child.exitCode}) before ready`);
      if (Date.now() > deadline) throw new Error(`not ready within ${DEADLINE_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    child.kill("SIGTERM");
    await closed;
  }
}

/** The last HTTP status seen per port, to explain a run that never got a 200. */
const lastStatus = new Map<number, number>();

async function httpOk(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    lastStatus.set(port, res.status);
    return res.status === 200;
  } catch {
    return false;
  }
}

function stats(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  const median = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  const f = (x: number) => x.toFixed(2);
  return `${f(s[0]!)} | ${f(median)} | ${f(mean)} | ${f(s[s.length - 1]!)}`;
}

const mib = (path: string) => (statSync(path).size / 2 ** 20).toFixed(1);

try {
  const kernel = await fetchKernel({ arch: "amd64" });
  const nginx = await nginxFixture();
  mkdirSync(join(work, "empty"));
  const floorImage = join(work, "floor.cpio");
  // dir: of an empty directory: the image is our init and app.conf; /missing makes it report 127.
  slimroot(["build", `dir:${join(work, "empty")}`, "--entrypoint", "/missing", "-o", floorImage]);
  const images: [label: string, path: string][] = [];
  // Debian's default site lives in /var/www/html, outside nginx's closure: the static image keeps it.
  const variants: [level: string, compress: string, extra: string[]][] = [
    ["none", "gzip", []],
    ["static", "gzip", ["--keep", "/var/www/html/**"]],
    ["static", "none", ["--keep", "/var/www/html/**"]],
  ];
  for (const [level, compress, extra] of variants) {
    const out = join(work, `nginx-${level}-${compress}.cpio`);
    try {
      slimroot(["build", nginx.ociRef, "--minimize", level, "--compress", compress, ...extra, "-o", out]);
      images.push([`nginx (--minimize ${level} ${extra.join(" ")}, ${mib(out)} MiB ${compress})`, out]);
    } catch (err) {
      process.stderr.write(`skipping --minimize ${level}: ${(err as Error).message.split("\n")[0]}\n`);
    }
  }

  const rows: [string, number[] | string][] = [];
  const version: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    slimroot(["--version"]);
    version.push(Number(process.hrtime.bigint() - t) / 1e9);
  }
  rows.push(["`slimroot --version` (CLI startup alone)", version]);
  const floor: number[] = [];
  for (let i = 0; i < runs; i++)
    floor.push(await timeRun([floorImage], (o) => /SLIMROOT_EXIT=\d+$/m.test(o)));
  rows.push([
    `floor: init only (${(statSync(floorImage).size / 1024).toFixed(0)} KiB cpio) -> exit report`,
    floor,
  ]);
  for (const [label, path] of images) {
    const xs: number[] = [];
    let failure = "";
    for (let i = 0; i < runs && !failure; i++) {
      const port = await freePort();
      try {
        xs.push(await timeRun([path, "-p", `${port}:80`], () => httpOk(port)));
      } catch (err) {
        const status = lastStatus.get(port);
        failure = `${(err as Error).message}${status ? ` (HTTP ${status})` : ""}`;
      }
    }
    rows.push([`${label} -> first HTTP 200`, failure || xs]);
  }

  const cpuModel = /^model name\s*:\s*(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown";
  const qemu = execFileSync("qemu-system-x86_64", ["--version"], { encoding: "utf8" }).split("\n")[0];
  const accel = chooseAccel("amd64");
  const machine = chooseMachine("amd64", accel, hostTscKhz());
  const initSize = statSync(join(REPO, "init", "build", "init-amd64")).size;
  const out = [
    `## slimroot run: start to first response (${runs} runs each)`,
    "",
    `- machine: ${cpus().length} CPUs (nproc), ${cpuModel}`,
    `- date: ${new Date().toISOString()}`,
    `- VMM: ${qemu}, -M ${machine}, -accel ${accel}, 256 MiB, 1 vCPU`,
    `- kernel: ${kernel.manifest.source}`,
    `- init: ${initSize} bytes (init/build/init-amd64)`,
    `- slimroot: ${cli.length === 1 ? "dist/cli/main.js" : "src via tsx"}; times include Node's startup`,
    "",
    "| what | min s | median s | mean s | max s |",
    "|---|---:|---:|---:|---:|",
    ...rows.map(([label, xs]) =>
      typeof xs === "string" ? `| ${label} | failed: ${xs} | | | |` : `| ${label} | ${stats(xs)} |`,
    ),
  ];
  process.stdout.write(`${out.join("\n")}\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
