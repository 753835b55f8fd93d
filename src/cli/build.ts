import type { Command } from "commander";
import { Option } from "commander";
import { build, type HostAddition, MINIMIZE_LEVELS, type MinimizeLevel } from "../build/build.js";
import { COMPRESSIONS, type Compression, compressionForFileName } from "../compress/compress.js";
import { parsePlatform } from "../image/platform.js";
import { readProfile } from "../trace/profile.js";
import { UserError } from "../util/errors.js";
import { byteProgress, clearStatus, statusLine } from "./progress.js";

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function parseAddition(spec: string): HostAddition {
  const i = spec.lastIndexOf(":");
  if (i <= 0 || i === spec.length - 1) throw new UserError(`--add ${spec}: expected SRC:DST`);
  const dest = spec.slice(i + 1);
  if (!dest.startsWith("/")) throw new UserError(`--add ${spec}: DST must be an absolute path in the image`);
  return { source: spec.slice(0, i), dest };
}

export function parseOwner(spec: string): { uid: number; gid: number } {
  const m = /^(\d+)(?::(\d+))?$/.exec(spec);
  if (!m) throw new UserError(`--chown ${spec}: expected UID[:GID] (numbers)`);
  return { uid: Number(m[1]), gid: Number(m[2] ?? m[1]) };
}

export function sourceDateEpoch(): number {
  const v = process.env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === "") return 0;
  if (!/^\d+$/.test(v)) throw new UserError(`SOURCE_DATE_EPOCH=${v}: expected a number of seconds`);
  return Number(v);
}

export function registerBuild(program: Command): void {
  program
    .command("build")
    .description(
      "build an initramfs from an image: oci:PATH[:TAG], docker-archive:PATH, docker://REF, dir:PATH, tar:PATH",
    )
    .argument("<source>", "the image to build from")
    .argument("[command...]", "after --: replaces the image's Cmd")
    .requiredOption("-o, --output <file>", "output file (written atomically)")
    .addOption(
      new Option("--compress <kind>", "compression (default: from the output name, else gzip)").choices(
        COMPRESSIONS as string[],
      ),
    )
    .addOption(
      new Option("--minimize <level>", "what to keep").choices(MINIMIZE_LEVELS as string[]).default("none"),
    )
    .option("--platform <os/arch>", "platform to pick from a multi-platform image (default: this machine's)")
    .option("--insecure", "allow plain http for docker:// registries")
    .option("--entrypoint <path>", "replace the image's Entrypoint (and drop its Cmd)")
    .option("-e, --env <K=V>", "set an environment variable (repeatable)", collect)
    .option("-w, --workdir <dir>", "working directory of the app")
    .option("-u, --user <user[:group]>", "user to run the app as (names resolved in the image)")
    .option("--add <src:dst>", "copy a host file or directory into the image (repeatable)", collect)
    .option("--chown <uid:gid>", "owner of --add'ed files (default 0:0)")
    .option(
      "--keep <glob>",
      "also keep image paths matching GLOB, e.g. '/usr/share/zoneinfo/**' (repeatable)",
      collect,
    )
    .option("--drop <glob>", "drop image paths matching GLOB whatever kept them (repeatable)", collect)
    .option("--profile <file>", "the profile `slimroot trace` wrote, for --minimize trace")
    .option("--strict", "a library the closure cannot find is an error, not a warning")
    .action(async (source: string, command: string[], opts: Record<string, unknown>) => {
      const output = opts.output as string;
      const compression =
        (opts.compress as Compression | undefined) ?? compressionForFileName(output) ?? "gzip";
      const bar = byteProgress("pulling");
      const result = await build({
        source,
        output,
        compression,
        minimize: opts.minimize as MinimizeLevel,
        platform: opts.platform ? parsePlatform(opts.platform as string) : undefined,
        insecure: Boolean(opts.insecure),
        overrides: {
          entrypoint: opts.entrypoint as string | undefined,
          cmd: command.length ? command : undefined,
          env: opts.env as string[] | undefined,
          workdir: opts.workdir as string | undefined,
          user: opts.user as string | undefined,
        },
        additions: ((opts.add as string[] | undefined) ?? []).map(parseAddition),
        addOwner: opts.chown ? parseOwner(opts.chown as string) : undefined,
        epoch: sourceDateEpoch(),
        keep: opts.keep as string[] | undefined,
        drop: opts.drop as string[] | undefined,
        strict: Boolean(opts.strict),
        profile: opts.profile ? await readProfile(opts.profile as string) : undefined,
        onProgress: (p) => bar.update(p),
        onLayer: (i, n, name) => {
          bar.stop();
          statusLine(`flattening layer ${i + 1}/${n} ${name.slice(0, 60)}`);
        },
      }).finally(() => {
        bar.stop();
        clearStatus();
      });
      for (const w of result.warnings) process.stderr.write(`slimroot: warning: ${w}\n`);
      process.stdout.write(
        `${result.output}: ${result.bytes} bytes (${compression}), ${result.files} entries, ${result.arch}, runs ${JSON.stringify(result.app.args)}\n`,
      );
    });
}
