// Benchmark for `slimroot build --minimize none --compress gzip` against the conventional
// pipeline (umoci raw unpack, then find | cpio -o -H newc | gzip), in one run on one machine.
// Usage: node --import tsx scripts/bench-build.ts [--big] [--runs N]
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, statSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { REPO } from "../test/support/cli.js";
import { nginxFixture } from "../test/support/fixtures.js";

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf("--runs") + 1]) || 3;
const big = args.includes("--big");
const cli = join(REPO, "dist", "cli", "main.js");
if (!existsSync(cli)) throw new Error("run `make build` first");

interface Sample {
  seconds: number;
  maxRssMiB: number;
  bytes: number;
}

/** Runs a shell command under GNU time; returns wall seconds and peak RSS of the biggest process. */
function timed(command: string, output: string): Sample {
  const r = spawnSync("/usr/bin/time", ["-f", "%e %M", "sh", "-c", command], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${command}: ${r.stderr}`);
  const [seconds, kib] = r.stderr.trim().split("\n").pop()!.split(" ").map(Number);
  return { seconds: seconds!, maxRssMiB: kib! / 1024, bytes: statSync(output).size };
}

function median(samples: Sample[]): Sample {
  const sorted = [...samples].sort((a, b) => a.seconds - b.seconds);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** `unpack` is the conventional first step (umoci raw unpack, or tar -x) into the directory $R. */
function compare(label: string, source: string, unpack: string, inputBytes: number) {
  const work = join(tmpdir(), `slimroot-bench-${process.pid}`);
  mkdirSync(work, { recursive: true });
  const ours: Sample[] = [];
  const theirs: Sample[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const out = join(work, "ours.cpio.gz");
      ours.push(
        timed(
          `node ${cli} build '${source}' --entrypoint /bin/sh --minimize none --compress gzip -o ${out} >/dev/null`,
          out,
        ),
      );
      const rootfs = join(work, "rootfs");
      const conv = join(work, "conventional.cpio.gz");
      rmSync(rootfs, { recursive: true, force: true });
      theirs.push(
        timed(
          `R=${rootfs}; ${unpack} && cd ${rootfs} && find . | cpio -o -H newc --quiet | gzip > ${conv}`,
          conv,
        ),
      );
      rmSync(rootfs, { recursive: true, force: true });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const o = median(ours);
  const lines = [
    `| ${label}: slimroot build (gzip -6, parallel) | ${o.seconds.toFixed(2)} s | ${o.maxRssMiB.toFixed(0)} MiB | ${(o.bytes / 1e6).toFixed(1)} MB | ${(inputBytes / 1e6 / o.seconds).toFixed(0)} MB/s |`,
  ];
  {
    const t = median(theirs);
    lines.push(
      `| ${label}: ${unpack.split(" ")[0]} + find/cpio/gzip (conventional) | ${t.seconds.toFixed(2)} s | ${t.maxRssMiB.toFixed(0)} MiB | ${(t.bytes / 1e6).toFixed(1)} MB | ${(inputBytes / 1e6 / t.seconds).toFixed(0)} MB/s |`,
      `| ${label}: ratio slimroot / conventional | ${(o.seconds / t.seconds).toFixed(2)}x | | | |`,
    );
  }
  return lines;
}

function treeBytes(dir: string): number {
  return Number(execFileSync("du", ["-sb", dir]).toString().split("\t")[0]);
}

/** A Debian rootfs with python3, python3-dev, build-essential and git (over 500 MB), as a one-layer tarball. */
function bigRootfs(): string {
  const dir = join(REPO, ".cache", "bench");
  const tar = join(dir, "bookworm-python3-build-essential-git.tar");
  if (!existsSync(tar)) {
    mkdirSync(dir, { recursive: true });
    execFileSync(
      "mmdebstrap",
      [
        "--quiet",
        "--format=tar",
        "--variant=minbase",
        "--include=python3,python3-dev,build-essential,git",
        "bookworm",
        `${tar}.tmp`,
        "http://deb.debian.org/debian",
      ],
      { stdio: "inherit", env: { ...process.env, SOURCE_DATE_EPOCH: "1700000000" } },
    );
    execFileSync("mv", [`${tar}.tmp`, tar]);
  }
  return tar;
}

const nginx = await nginxFixture();
const cpu = execFileSync("sh", ["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]).toString().trim();
const rows = [
  `Machine: ${cpus().length} cores (${cpu}), Node ${process.version}, ${new Date().toISOString().slice(0, 10)}; median of ${runs} runs.`,
  "",
  "| what | wall | peak RSS | output | input throughput |",
  "|---|---|---|---|---|",
  ...compare(
    "nginx (Debian, 2 layers)",
    nginx.ociRef,
    `umoci raw unpack --image '${nginx.ociLayout}:latest' $R 2>/dev/null`,
    treeBytes(nginx.unpacked),
  ),
];
if (big) {
  const tar = bigRootfs();
  rows.push(
    ...compare(
      "python3 + build-essential + git rootfs (tar:)",
      `tar:${tar}`,
      `mkdir $R && tar -xf ${tar} -C $R`,
      statSync(tar).size,
    ),
  );
}
process.stdout.write(`${rows.join("\n")}\n`);
