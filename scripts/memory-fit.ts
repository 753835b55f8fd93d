/**
 * Measures what a kernel keeps for itself at boot, for the guest memory rule (src/vm/memory.ts,
 * docs/run.md "Guest memory"), and checks the rule's minimum for an image with bench's least-RAM
 * bisection (src/bench/boot.ts), booting QEMU directly so that --mem's refusal is not in the way.
 *
 *   node --import tsx scripts/memory-fit.ts sizes  KERNEL PROBE.cpio MIB...
 *   node --import tsx scripts/memory-fit.ts bisect KERNEL IMAGE
 *
 * `sizes`: PROBE's app prints /proc/mounts (e.g. `slimroot build dir:D --entrypoint
 * /bin/busybox -- cat /proc/mounts`); for each -m it prints the rootfs size= and what the kernel
 * kept (M - 2 x size - initrd). `bisect`: the least -m at which IMAGE's app starts (its first
 * console line after the init's), between 24 MiB under the rule's minimum and the minimum.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { leastMemory } from "../src/bench/boot.js";

const CLI = join(import.meta.dirname, "..", "dist", "cli", "main.js");

function capture(argv: string[], timeoutMs = 300_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** `run --dry-run`'s QEMU command (its files kept in `dir`) and the initrd's size. */
async function qemuCommand(
  kernel: string,
  image: string,
  dir: string,
): Promise<{ argv: string[]; initrd: number }> {
  const r = await capture([
    "node",
    CLI,
    "run",
    "--dry-run",
    "-o",
    dir,
    "--mem",
    "4096",
    "--kernel",
    kernel,
    image,
  ]);
  const line = r.out.split("\n").find((l) => l.startsWith("qemu-system-"));
  if (r.code !== 0 || !line) throw new Error(`run --dry-run: ${r.out}`);
  // The command is printed shell-quoted: only the -append value is in quotes.
  const argv = line.match(/'[^']*'|\S+/g)!.map((a) => a.replace(/^'(.*)'$/, "$1"));
  return { argv, initrd: (await stat(join(dir, "initrd"))).size };
}

const withMem = (argv: string[], mib: number) => argv.map((a, i) => (argv[i - 1] === "-m" ? String(mib) : a));

async function main() {
  const [mode, kernel, image, ...rest] = process.argv.slice(2);
  if (!mode || !kernel || !image) throw new Error("usage: memory-fit.ts sizes|bisect KERNEL IMAGE [MIB...]");
  const dir = await mkdtemp(join(tmpdir(), "slimroot-memory-fit-"));
  try {
    const { argv, initrd } = await qemuCommand(kernel, image, join(dir, "vm"));
    if (mode === "sizes") {
      console.log(`initrd ${initrd} bytes`);
      for (const mib of rest.map(Number)) {
        const { out } = await capture(withMem(argv, mib));
        const kib = Number(/^rootfs \/ rootfs \S*size=(\d+)k/m.exec(out)?.[1]);
        const kept = (mib * 1024 - 2 * kib - initrd / 1024) / 1024;
        console.log(`-m ${mib}: rootfs size=${kib}k, kept ${Number.isNaN(kib) ? "?" : kept.toFixed(3)} MiB`);
      }
      return;
    }
    const refused = await capture(["node", CLI, "run", "--dry-run", "--mem", "1", "--kernel", kernel, image]);
    const need = Number(/needs at least (\d+) MiB/.exec(refused.out)?.[1]);
    if (!need) throw new Error(`no minimum in: ${refused.out}`);
    // The app started: a console line that is neither the kernel's nor the init's.
    const started = (out: string) =>
      !/Initramfs unpacking failed/.test(out) && /SLIMROOT_EXIT=0|^rootfs \/ /m.test(out);
    const least = await leastMemory(async (mib) => started((await capture(withMem(argv, mib))).out), {
      floorMiB: need - 24,
      startMiB: need,
      maxMiB: need + 64,
      onStep: (mib, ok) => console.log(`-m ${mib}: ${ok ? "booted" : "failed"}`),
    });
    console.log(`rule's minimum ${need} MiB; least that boots ${least ?? "none up to +64"} MiB`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  console.error(err.message);
  process.exit(1);
});
