import type { Command } from "commander";
import { parseProbe } from "../trace/probe.js";
import { traceImage } from "../trace/trace.js";
import { parsePortForward } from "../vm/ports.js";
import { addImageOptions, imageSettings } from "./image-options.js";
import { collect, parseDuration, positiveInt } from "./parse.js";

export function registerTrace(program: Command): void {
  const cmd = program
    .command("trace")
    .description(
      "boot the whole image with the init recording every file the app opens, run probes against it, and write the files as a profile for build --minimize trace",
    )
    .argument("<source>", "the image, as for build")
    .argument("[command...]", "after --: replaces the image's Cmd (give build the same)")
    .requiredOption("-o, --output <file>", "the profile to write")
    .option(
      "--probe <probe>",
      "http:PORT[/PATH] | tcp:PORT[:SEND[:EXPECT]] | exec:COMMAND (with $SLIMROOT_PORT_<guest> set); repeatable, run in order, each retried until it passes. None: trace until the app exits",
      collect,
    )
    .option(
      "-p, --publish <[ip:]host:guest>",
      "forward this host port to a guest port (default: a free host port for every probed port)",
      collect,
    )
    .option(
      "--kernel <path>",
      "a kernel directory from kernel fetch, or a kernel image file (default: the fetched kernel)",
    )
    .option("--settle <duration>", "after the probes pass, keep recording this long", "2s")
    .option(
      "--timeout <duration>",
      "how long the probes may take to pass (or, without probes, the app to run)",
      "3m",
    )
    .option("--stop-timeout <duration>", "how long the app gets to exit once stopped", "10s")
    .option("--mem <MiB>", "guest memory (default: sized from the image, which lives in RAM)")
    .option("--cpus <n>", "virtual CPUs", "1")
    .option("-v, --verbose", "copy the guest console to stderr")
    .option(
      "--merge",
      "add this trace to the profile already at -o (another path through the app: its paths and probes stay, these are added)",
    );
  addImageOptions(cmd).action(async (source: string, command: string[], opts: Record<string, unknown>) => {
    const probes = ((opts.probe as string[] | undefined) ?? []).map(parseProbe);
    const timeoutMs = parseDuration(opts.timeout as string, "--timeout");
    const log = (line: string) => process.stderr.write(`slimroot: ${line}\n`);
    const r = await traceImage({
      image: imageSettings(source, command, opts),
      output: opts.output as string,
      ...(opts.kernel ? { kernel: opts.kernel as string } : {}),
      probes,
      publish: ((opts.publish as string[] | undefined) ?? []).map(parsePortForward),
      ...(opts.mem ? { memMiB: positiveInt(opts.mem as string, "--mem", 1 << 20) } : {}),
      cpus: positiveInt(opts.cpus as string, "--cpus", 64),
      readyTimeoutMs: timeoutMs,
      ...(probes.length ? {} : { runTimeoutMs: timeoutMs }),
      settleMs: parseDuration(opts.settle as string, "--settle"),
      stopGraceMs: parseDuration(opts.stopTimeout as string, "--stop-timeout"),
      ...(opts.verbose ? { echo: process.stderr } : {}),
      ...(opts.merge ? { merge: true } : {}),
      log,
    });
    if (r.lost) log(`warning: ${r.lost} file events were not recorded; the profile may be incomplete`);
    process.stdout.write(
      `${r.output}: ${r.paths} image paths, ${r.listed} directories listed, ${r.missing} lookups not found${r.created ? `; ${r.created} paths used were made at run time, not in the image` : ""}; app exit status ${r.status}\n`,
    );
  });
}
