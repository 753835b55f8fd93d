import type { Command } from "commander";
import { firecrackerSnapshotFiles, takeSnapshot } from "../snapshot/take.js";
import { parseProbe } from "../trace/probe.js";
import { oneLine } from "../util/errors.js";
import { parseVolume } from "../vm/disks.js";
import { EXIT_FAILED } from "../vm/run.js";
import { collect, parseDuration } from "./parse.js";
import { machineOptions, withStopSignals } from "./run.js";

const MiB = 1 << 20;

export function registerSnapshot(program: Command): void {
  program
    .command("snapshot")
    .description(
      "boot an image, wait until its app passes the probe, and save the whole VM to a file that `slimroot run FILE` resumes, already serving (QEMU; 125 on failure)",
    )
    .argument("<image>", "an initramfs, a disk image or a kernel with its app built in, from slimroot build")
    .argument("[command...]", "after --: replaces the image's whole command")
    .requiredOption(
      "--probe <probe>",
      "when the app is ready: http:PORT[/PATH], tcp:PORT[:SEND[:EXPECT]] or exec:COMMAND",
    )
    .requiredOption("-o, --output <file>", "the snapshot file to write (APP.snap)")
    .option("--kernel <path>", "a kernel directory from kernel fetch, or a kernel image file")
    .option("--modules <dir>", "load every .ko under this directory in the VM (with --kernel FILE)")
    .option(
      "-p, --publish <[ip:]host:guest>",
      "forward a host port while the snapshot is made (default: a free one for the probe)",
      collect,
    )
    .option("-e, --env <K=V>", "set an environment variable for the app (repeatable)", collect)
    .option("--mem <MiB>", "guest memory (default: sized from the image)")
    .option("--cpus <n>", "virtual CPUs", "1")
    .option("--volume <FILE:/path:ro>", "attach a read-only disk image at /path (repeatable)", collect)
    .option("--ready-timeout <duration>", "how long the app gets to pass the probe", "120s")
    .option(
      "--vmm <vmm>",
      "qemu, or firecracker: -o is then a directory with the VM's files, the snapshot API requests and snapshot.sh (Firecracker needs KVM: made, not run, here)",
      "qemu",
    )
    .option("--tap <name>", "firecracker: attach eth0 to this host tap device")
    .action(async (image: string, command: string[], opts: Record<string, unknown>) => {
      try {
        const request = (stop: AbortSignal, kill: AbortSignal) => ({
          image,
          output: opts.output as string,
          probe: parseProbe(opts.probe as string),
          readyTimeoutMs: parseDuration(opts.readyTimeout as string, "--ready-timeout"),
          ...machineOptions(opts),
          env: (opts.env as string[] | undefined) ?? [],
          ...(command.length ? { args: command } : {}),
          volumes: ((opts.volume as string[] | undefined) ?? []).map(parseVolume),
          stopGraceMs: 5000,
          stdout: process.stderr,
          stderr: process.stderr,
          ...(opts.vmm === "firecracker" ? { vmm: "firecracker" as const } : {}),
          ...(opts.tap ? { tap: opts.tap as string } : {}),
          stop,
          kill,
        });
        if (opts.vmm === "firecracker") {
          const dir = await firecrackerSnapshotFiles(
            request(new AbortController().signal, new AbortController().signal),
          );
          process.stderr.write(
            `slimroot: ${dir}: vm.json, snapshot-create.json, snapshot-load.json and snapshot.sh for a host with Firecracker and KVM (none here: not run)\n`,
          );
          return;
        }
        const r = await withStopSignals((stop, kill) => takeSnapshot(request(stop, kill)));
        const m = r.header.memory;
        process.stderr.write(
          `slimroot: snapshot ${opts.output as string}: ${(r.fileBytes / 1024).toFixed(0)} KiB of state and its RAM file ${r.ramFile}: ${(m.ramFileBytes / MiB).toFixed(1)} MiB on disk (guest RAM ${m.guestMiB} MiB: ${(m.inUseBytes / MiB).toFixed(1)} MiB in use, ${(m.nonZeroBytes / MiB).toFixed(1)} MiB non-zero pages); the app was ready ${r.readySeconds.toFixed(2)} s after QEMU started\n`,
        );
      } catch (err) {
        process.stderr.write(`slimroot: ${oneLine(err)}\n`);
        process.exitCode = EXIT_FAILED;
      }
    });
}
