import type { Command } from "commander";
import { diskIdentity } from "../disk/identity.js";
import { oneLine, UserError } from "../util/errors.js";
import { parseVolume } from "../vm/disks.js";
import { parsePortForward } from "../vm/ports.js";
import { EXIT_FAILED, runImage } from "../vm/run.js";

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** `500ms`, `30`, `30s`, `2m`, `1h` -> milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new UserError(`${flag} ${text}: expected a duration such as 30s, 2m or 500ms`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "s") as "ms" | "s" | "m" | "h"];
  return Math.round(Number(m[1]) * unit);
}

function positiveInt(text: string, flag: string, max: number): number {
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= 1 && n <= max)) throw new UserError(`${flag} ${text}: expected a whole number from 1 to ${max}`);
  return n;
}

/** `-e NAME=VALUE`, or `-e NAME` for the value NAME has here (skipped when unset). */
function envEntries(specs: string[]): string[] {
  const out: string[] = [];
  for (const s of specs) {
    if (s.startsWith("=") || s === "") throw new UserError(`-e ${s}: expected NAME=VALUE`);
    if (s.includes("=")) out.push(s);
    else if (process.env[s] !== undefined) out.push(`${s}=${process.env[s]}`);
  }
  return out;
}

export function registerRun(program: Command): void {
  program
    .command("run")
    .description(
      "boot an image built by slimroot build in a QEMU microVM; the console goes to stdout, and the exit status is the app's (125: slimroot or the VM failed, 124: --timeout)",
    )
    .argument("<image>", "an initramfs or a disk image (ext4, erofs, squashfs) from slimroot build")
    .argument("[command...]", "after --: replaces the image's whole command (Entrypoint and Cmd)")
    .option(
      "--kernel <path>",
      "a kernel directory from kernel fetch, or a kernel image file (default: the fetched kernel for the image's architecture)",
    )
    .option("--modules <dir>", "load every .ko under this directory in the VM (with --kernel FILE)")
    .option(
      "-p, --publish <[ip:]host:guest[/udp]>",
      "forward a host port to the VM (repeatable; host side 127.0.0.1)",
      collect,
    )
    .option("-e, --env <K=V>", "set an environment variable for the app (repeatable)", collect)
    .option("--mem <MiB>", "guest memory", "256")
    .option("--cpus <n>", "virtual CPUs", "1")
    .option("--timeout <duration>", "stop the VM after this long and exit 124 (e.g. 30s, 5m)")
    .option(
      "--stop-timeout <duration>",
      "how long the app gets to exit after SIGTERM/SIGINT or --timeout",
      "10s",
    )
    .option(
      "--volume <FILE:/path[:ro]>",
      "attach an ext4, erofs or squashfs image as a virtio disk mounted at /path (repeatable)",
      collect,
    )
    .option(
      "--read-only",
      "an ext4 root: mount it read-only under a tmpfs overlay (the file is never written)",
    )
    .option("--dry-run", "print the QEMU command line and exit")
    .action(async (image: string, command: string[], opts: Record<string, unknown>) => {
      try {
        const env = envEntries((opts.env as string[] | undefined) ?? []);
        if (opts.readOnly) {
          const root = await diskIdentity(image).catch(() => undefined);
          if (root?.format !== "ext4")
            throw new UserError(
              `--read-only: for an ext4 root (${image} is ${root ? root.format : "not a disk image"}, read-only anyway)`,
            );
        }
        const code = await runImage({
          image,
          ...(opts.kernel ? { kernel: opts.kernel as string } : {}),
          ...(opts.modules ? { modules: opts.modules as string } : {}),
          forwards: ((opts.publish as string[] | undefined) ?? []).map(parsePortForward),
          memMiB: positiveInt(opts.mem as string, "--mem", 1 << 20),
          cpus: positiveInt(opts.cpus as string, "--cpus", 64),
          env,
          ...(command.length ? { args: command } : {}),
          ...(opts.timeout ? { timeoutMs: parseDuration(opts.timeout as string, "--timeout") } : {}),
          stopGraceMs: parseDuration(opts.stopTimeout as string, "--stop-timeout"),
          dryRun: Boolean(opts.dryRun),
          volumes: ((opts.volume as string[] | undefined) ?? []).map(parseVolume),
          readOnly: Boolean(opts.readOnly),
          stdout: process.stdout,
          stderr: process.stderr,
        });
        process.exitCode = code;
      } catch (err) {
        // Like docker run: whatever kept the app from running is 125, so the app's own
        // statuses stay unambiguous.
        process.stderr.write(`slimroot: ${oneLine(err)}\n`);
        if (process.env.SLIMROOT_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
        process.exitCode = EXIT_FAILED;
      }
    });
}
