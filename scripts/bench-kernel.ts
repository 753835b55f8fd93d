// Benchmark for slimroot's own kernel, on Debian's nginx image minimized with a trace (xz):
// (a) Debian's cloud kernel + the initramfs, (b) slimroot's kernel + the initramfs, (c)
// slimroot's kernel with the app built in (kernel build --embed). For each: the bytes QEMU
// boots, the time from starting `slimroot run` to the first HTTP 200 (median of N), the least
// guest RAM that still serves (bisected, each step one boot and one request), and the
// compressed kernel's size. Prints a markdown table.
// Usage: node --import tsx scripts/bench-kernel.ts [--runs N]
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { buildKernel } from "../src/kernel/build.js";
import { fetchKernel } from "../src/kernel/fetch.js";
import { nginxFixture } from "../test/support/fixtures.js";
import { cli, leastRam, median, slimroot, timeToServe } from "./bench-support.js";

const args = process.argv.slice(2);
const runs = Number(args[args.indexOf("--runs") + 1]) || 5;
const work = mkdtempSync(join(tmpdir(), "slimroot-bench-kernel-"));
const MiB = 1 << 20;
const size = (f: string) => statSync(f).size;
const mb = (n: number) => `${(n / 1e6).toFixed(2)} MB`;

try {
  const debian = await fetchKernel({ arch: "amd64" });
  const ours = await buildKernel({ arch: "amd64" });
  const nginx = await nginxFixture();
  const profile = join(work, "nginx.profile");
  slimroot(["trace", nginx.ociRef, "--probe", "http:80/", "-o", profile]);
  const image = join(work, "nginx.cpio.xz");
  slimroot(["build", nginx.ociRef, "--minimize", "trace", "--profile", profile, "--no-verify", "-o", image]);
  const embedded = join(work, "nginx.vmlinuz");
  const t0 = process.hrtime.bigint();
  slimroot(["kernel", "build", "--embed", image, "-o", embedded]);
  const embedSeconds = Number(process.hrtime.bigint() - t0) / 1e9;

  const debianKernel = join(debian.dir, debian.manifest.kernel);
  const ourKernel = join(ours.dir, ours.manifest.kernel);
  const modules = join(debian.dir, debian.manifest.modulesCpio?.mmio ?? "");
  const cases = [
    {
      name: "(a) Debian cloud kernel + initramfs",
      args: [image, "--kernel", debian.dir],
      // The initrd is the image, the virtio modules and run.conf (a few hundred bytes).
      booted: size(debianKernel) + size(image) + size(modules),
      kernel: size(debianKernel),
    },
    {
      name: "(b) slimroot kernel + initramfs",
      args: [image, "--kernel", ours.dir],
      booted: size(ourKernel) + size(image),
      kernel: size(ourKernel),
    },
    {
      name: "(c) slimroot kernel, app embedded",
      args: [embedded],
      booted: size(embedded),
      kernel: size(ourKernel),
    },
  ];
  const rows: string[] = [];
  const times: number[] = [];
  const rams: number[] = [];
  for (const c of cases) {
    const samples: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t = await timeToServe([...c.args, "--mem", "256"], 120_000);
      if (t === undefined) throw new Error(`${c.name}: no page within 120 s`);
      samples.push(t);
    }
    const t = median(samples);
    const ram = await leastRam(c.args, 16, 256);
    times.push(t);
    rams.push(ram);
    rows.push(`| ${c.name} | ${mb(c.booted)} | ${t.toFixed(2)} s | ${ram} MiB | ${mb(c.kernel)} |`);
  }

  const cpu = execFileSync("sh", ["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"])
    .toString()
    .trim();
  const met = (ok: boolean) => (ok ? "met" : "not met");
  const lines = [
    `Machine: ${cpus().length} cores (${cpu}), ${Math.round(totalmem() / 1024 / MiB)} GiB, Node ${process.version}, QEMU TCG (-M microvm), load average ${execFileSync("cut", ["-d", " ", "-f1", "/proc/loadavg"]).toString().trim()} at the end; ${new Date().toISOString().slice(0, 10)}; kernels ${debian.manifest.version} (Debian) and ${ours.manifest.version} (slimroot).`,
    `Image: nginx minimized with a trace, xz (${mb(size(image))}); kernel build --embed took ${embedSeconds.toFixed(1)} s on a cached kernel.`,
    "",
    `| nginx | bytes booted | slimroot run to first HTTP 200 (median of ${runs}) | least guest RAM serving | compressed kernel |`,
    "|---|---|---|---|---|",
    ...rows,
    "",
    "| goal | result |",
    "|---|---|",
    `| (c) ready in <= 0.5x the time of (a) | ${(times[2]! / times[0]!).toFixed(2)}x: ${met(times[2]! <= 0.5 * times[0]!)} |`,
    `| (c) serves in <= 32 MiB (stretch 24) | ${rams[2]} MiB: ${met(rams[2]! <= 32)}${rams[2]! <= 24 ? " (stretch met)" : ""} |`,
    `| amd64 kernel <= 2.5 MB without the app | ${mb(cases[1]!.kernel)}: ${met(cases[1]!.kernel <= 2.5e6)} |`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  process.stderr.write(`(CLI ${cli.length === 1 ? "dist/" : "via tsx"})\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
