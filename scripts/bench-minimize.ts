// Benchmark for `--minimize` on Debian's nginx image: the image at each level (raw cpio and
// xz), next to the floor (an xz'd cpio of exactly the files a trace saw); the time a traced
// build takes from an existing profile; and the least guest RAM at which the traced image
// still serves its page with Debian's cloud kernel (`slimroot run --mem N`, bisected).
// Prints a markdown table. Usage: node --import tsx scripts/bench-minimize.ts [--runs N]
import { execFileSync } from "node:child_process";
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { compressor } from "../src/compress/compress.js";
import { fetchKernel } from "../src/kernel/fetch.js";
import { decodeProfile } from "../src/trace/profile.js";
import { nginxFixture } from "../test/support/fixtures.js";
import { cli, leastRam, median, slimroot } from "./bench-support.js";

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf("--runs") + 1]) || 3;
const work = mkdtempSync(join(tmpdir(), "slimroot-bench-minimize-"));
const MiB = 1 << 20;

/** Bytes of `file` compressed with the builder's own xz settings (what --compress xz writes). */
async function xzBytes(file: string): Promise<number> {
  let n = 0;
  await pipeline(
    createReadStream(file),
    compressor("xz"),
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        n += chunk.length;
        cb();
      },
    }),
  );
  return n;
}

function seconds(f: () => void): number {
  const t = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

try {
  const kernel = await fetchKernel({ arch: "amd64" });
  const nginx = await nginxFixture();
  const profile = join(work, "nginx.profile");
  slimroot(["trace", nginx.ociRef, "--probe", "http:80/", "-o", profile]);

  const sizes: [string, number, number][] = [];
  for (const level of ["none", "safe", "static", "trace"]) {
    const out = join(work, `${level}.cpio`);
    const extra = level === "trace" ? ["--profile", profile, "--no-verify"] : [];
    slimroot(["build", nginx.ociRef, "--minimize", level, "--compress", "none", "-o", out, ...extra]);
    sizes.push([level, statSync(out).size, await xzBytes(out)]);
  }
  // The floor: exactly the traced files (no init, no rules, no closure), from umoci's tree.
  const traced = decodeProfile(readFileSync(profile, "utf8"), profile).paths;
  const floor = join(work, "floor.cpio");
  execFileSync("sh", ["-c", `cd '${nginx.unpacked}' && cpio -o -H newc --quiet > '${floor}'`], {
    input: `${traced.map((p) => `./${p}`).join("\n")}\n`,
  });
  sizes.push([`floor (the ${traced.length} traced paths alone)`, statSync(floor).size, await xzBytes(floor)]);

  const buildTimes = (compress: string) =>
    median(
      Array.from({ length: runs }, () =>
        seconds(() =>
          slimroot([
            "build",
            nginx.ociRef,
            "--minimize",
            "trace",
            "--profile",
            profile,
            "--no-verify",
            "--compress",
            compress,
            "-o",
            join(work, `timed.cpio.${compress}`),
          ]),
        ),
      ),
    );
  const tGzip = buildTimes("gzip");
  const tXz = buildTimes("xz");

  // Least RAM that still serves, bisected on [32, 256] MiB. The compression matters: the
  // kernel unpacks the initramfs while it still holds the compressed copy, and its xz
  // decoder allocates a dictionary, gzip's only a 32 KiB window.
  const ramGzip = await leastRam([join(work, "timed.cpio.gzip")], 32, 256);
  const ramXz = await leastRam([join(work, "timed.cpio.xz")], 32, 256);

  const rootfsBytes = Number(execFileSync("du", ["-sb", nginx.unpacked]).toString().split("\t")[0]);
  const cpu = execFileSync("sh", ["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"])
    .toString()
    .trim();
  const mb = (n: number) => `${(n / 1e6).toFixed(2)} MB`;
  const rows = [
    `Machine: ${cpus().length} cores (${cpu}), ${Math.round(totalmem() / 1024 / MiB)} GiB, Node ${process.version}, QEMU TCG, kernel ${kernel.manifest.version}; ${new Date().toISOString().slice(0, 10)}; CLI ${cli.length === 1 ? "dist/" : "via tsx"}.`,
    "",
    "| nginx (Debian 12) | raw cpio | xz |",
    "|---|---|---|",
    `| source rootfs (umoci unpack, du -sb) | ${mb(rootfsBytes)} | |`,
    ...sizes.map(([what, raw, xz]) => `| ${what} | ${mb(raw)} | ${mb(xz)} |`),
    "",
    "| measure | value | goal |",
    "|---|---|---|",
    `| build --minimize trace from a profile, gzip (median of ${runs}) | ${tGzip.toFixed(2)} s | < 2 s |`,
    `| build --minimize trace from a profile, xz (median of ${runs}) | ${tXz.toFixed(2)} s | |`,
    `| least guest RAM serving the page (traced image, gzip, ${mb(statSync(join(work, "timed.cpio.gzip")).size)}) | ${ramGzip} MiB | <= 80 MiB |`,
    `| least guest RAM serving the page (traced image, xz, ${mb(statSync(join(work, "timed.cpio.xz")).size)}) | ${ramXz} MiB | <= 80 MiB |`,
  ];
  process.stdout.write(`${rows.join("\n")}\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
