import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { Ajv } from "ajv";
import type { Command } from "commander";
import { bench } from "../bench/bench.js";
import { FORMATS, KERNELS, LEVELS, pick } from "../bench/matrix.js";
import { stopAll } from "../bench/processes.js";
import { formatTable, renderSvg } from "../bench/report.js";
import { BENCH_JSON_SCHEMA } from "../bench/schema.js";
import { writeFileAtomically } from "../output/atomic.js";
import { checkOutputs } from "../output/output.js";
import { imageInputs } from "../pipeline/output.js";
import { parseProbe } from "../trace/probe.js";
import { UserError } from "../util/errors.js";
import { addImageOptions, parseAddition } from "./image-options.js";

import { collect, parseDuration } from "./parse.js";

/** The image options as `build` and `trace` take them, passed on unchanged. */
function imageArgs(opts: Record<string, unknown>): string[] {
  const out: string[] = [];
  const one = (flag: string, v: unknown) => {
    if (typeof v === "string") out.push(flag, v);
  };
  one("--platform", opts.platform);
  one("--entrypoint", opts.entrypoint);
  one("--workdir", opts.workdir);
  one("--user", opts.user);
  one("--chown", opts.chown);
  for (const e of (opts.env as string[] | undefined) ?? []) out.push("--env", e);
  for (const a of (opts.add as string[] | undefined) ?? []) out.push("--add", a);
  for (const k of (opts.keep as string[] | undefined) ?? []) out.push("--keep", k);
  return out;
}

export function registerBench(program: Command): void {
  const cmd = program
    .command("bench")
    .description(
      "build and boot an image in every variant (level x format x kernel) and the hand-made routes; report size, build time, time to ready and least RAM",
    )
    .argument("<source>", "the image, as for build")
    .argument("[command...]", "after --: replaces the image's Cmd")
    .option(
      "--probe <probe>",
      "ready when this passes (repeatable): http:PORT[/PATH], tcp:PORT[...], exec:CMD",
      collect,
    )
    .option("--variants <levels>", `minimization levels (${Object.keys(LEVELS).join(",")})`, "none,trace")
    .option("--formats <formats>", `output formats (${Object.keys(FORMATS).join(",")})`, "cpio")
    .option("--kernels <kernels>", `kernels (${Object.keys(KERNELS).join(",")})`, "debian")
    .option("--runs <n>", "timed boots per variant", "3")
    .option("--mem <MiB>", "guest memory for the timed boots (default: run's)")
    .option("--no-ram", "skip the least-RAM bisection")
    .option("--no-conventional", "skip the hand-made routes")
    .option(
      "--timeline",
      "one more boot of each slimroot variant with run --timeline: its phases (kernel, initcalls, root ready, init, app to probe) in the table, JSON and SVG",
    )
    .option(
      "--resume",
      "also snapshot each slimroot variant once ready (slimroot snapshot, the first probe) and time --runs resumes of it: resumed ready time and its ratio to the cold one, in the table, JSON and SVG",
    )
    .option("--boot-timeout <duration>", "longest wait for one boot to be ready", "2m")
    .option("--keep <glob>", "passed to build: also keep these image paths (repeatable)", collect)
    .option("--json <file>", "write the results as JSON (schema: docs/bench.md)")
    .option("--svg <file>", "write a chart of size, ready time and RAM per variant");
  addImageOptions(cmd).action(async (source: string, command: string[], opts: Record<string, unknown>) => {
    const probes = ((opts.probe as string[] | undefined) ?? []).map(parseProbe);
    const runs = Number(opts.runs);
    if (!(Number.isInteger(runs) && runs >= 1 && runs <= 100))
      throw new UserError(`--runs ${opts.runs}: expected 1 to 100`);
    if (opts.resume && probes.length === 0)
      throw new UserError("--resume: needs a --probe (a snapshot is taken once the app passes it)");
    const mem = opts.mem === undefined ? undefined : Number(opts.mem);
    if (mem !== undefined && !(Number.isInteger(mem) && mem >= 8))
      throw new UserError(`--mem ${opts.mem}: expected MiB, at least 8`);
    // Outputs are checked now, not after an hour of benchmarks.
    await checkOutputs(
      (["--json", "--svg"] as const).flatMap((flag) => {
        const path = opts[flag.slice(2)] as string | undefined;
        return path ? [{ path, flag, why: false }] : [];
      }),
      imageInputs({ source, additions: ((opts.add as string[] | undefined) ?? []).map(parseAddition) }),
    );
    const work = await mkdtemp(join(tmpdir(), "slimroot-bench-"));
    const abort = new AbortController();
    // Signals end bench here, not in main: every VM is stopped and the scratch removed first.
    let stopping = false;
    const onSignal = (code: number) => () => {
      if (stopping) return;
      stopping = true;
      process.stderr.write("slimroot: bench: stopping the VMs\n");
      abort.abort();
      void stopAll()
        .then(() => rm(work, { recursive: true, force: true }))
        .finally(() => process.exit(code));
    };
    for (const [s, code] of [
      ["SIGINT", 130],
      ["SIGTERM", 143],
      ["SIGHUP", 129],
    ] as const) {
      process.removeAllListeners(s);
      process.on(s, onSignal(code));
    }
    try {
      const report = await bench({
        source,
        probes,
        levels: pick("--variants", opts.variants as string, LEVELS),
        formats: pick("--formats", opts.formats as string, FORMATS),
        kernels: pick("--kernels", opts.kernels as string, KERNELS),
        runs,
        ram: opts.ram !== false,
        conventional: opts.conventional !== false,
        ...(opts.timeline ? { timeline: true } : {}),
        ...(opts.resume ? { resume: true } : {}),
        imageArgs: imageArgs(opts),
        command,
        insecure: Boolean(opts.insecure),
        ...(mem ? { memMiB: mem } : {}),
        bootTimeoutMs: parseDuration(opts.bootTimeout as string, "--boot-timeout"),
        work,
        cli: [process.execPath, ...process.execArgv, process.argv[1]!],
        progress: (line) => process.stderr.write(`bench: ${line}\n`),
        signal: abort.signal,
      });
      const validate = new Ajv({ allErrors: true }).compile(BENCH_JSON_SCHEMA);
      if (!validate(report))
        throw new Error(`internal: the report does not match its schema: ${JSON.stringify(validate.errors)}`);
      if (opts.json)
        await writeFileAtomically(
          opts.json as string,
          Readable.from([`${JSON.stringify(report, null, 2)}\n`]),
        );
      if (opts.svg) await writeFileAtomically(opts.svg as string, Readable.from([renderSvg(report)]));
      process.stdout.write(`${formatTable(report)}\n`);
    } finally {
      if (!stopping) {
        await stopAll();
        await rm(work, { recursive: true, force: true });
      } else await new Promise(() => undefined); // the signal handler exits
    }
  });
}
