import type { Command } from "commander";
import { Option } from "commander";
import { COMPRESSIONS, type Compression, compressionForFileName } from "../compress/compress.js";
import { diskFormatForFileName } from "../disk/formats.js";
import { checkSizeOption } from "../disk/write.js";
import { checkOutput } from "../output/output.js";
import { build, MINIMIZE_LEVELS, type MinimizeLevel } from "../pipeline/build.js";
import { FORMATS, IMAGE_FORMATS, type ImageFormat } from "../pipeline/formats.js";
import { parseProbe } from "../trace/probe.js";
import {
  loadProfile,
  mergeProfiles,
  type Profile,
  profileCommandMismatch,
  profileDigestMismatch,
  profileProbes,
} from "../trace/profile.js";
import { printable, UserError } from "../util/errors.js";
import { addImageOptions, imageSettings } from "./image-options.js";
import { collect, parseDuration } from "./parse.js";
import { byteProgress, clearStatus, statusLine } from "./progress.js";

export { parseAddition, parseOwner, sourceDateEpoch } from "./image-options.js";

export function registerBuild(program: Command): void {
  const cmd = program
    .command("build")
    .description(
      "build an initramfs from an image: oci:PATH[:TAG], docker-archive:PATH, docker://REF, dir:PATH, tar:PATH, bin:PATH, list:FILE",
    )
    .argument("<source>", "the image to build from")
    .argument("[command...]", "after --: replaces the image's Cmd")
    .requiredOption("-o, --output <file>", "output file (written atomically)")
    .addOption(
      new Option(
        "--format <format>",
        "cpio; ext4, erofs, squashfs (disk images); or initramfs-list: a gen_init_cpio list and its files in the -o directory (default: from the output name: .ext4, .erofs, .sqfs/.squashfs, else cpio)",
      ).choices(IMAGE_FORMATS as string[]),
    )
    .option("--size <size>", "ext4: image size, e.g. 512M or 2G (default: the content plus 20% and 24 MiB)")
    .addOption(
      new Option("--compress <kind>", "compression (default: from the output name, else gzip)").choices(
        COMPRESSIONS as string[],
      ),
    )
    .addOption(
      new Option("--minimize <level>", "what to keep").choices(MINIMIZE_LEVELS as string[]).default("none"),
    );
  addImageOptions(cmd)
    .option(
      "--keep <glob>",
      "also keep image paths matching GLOB, e.g. '/usr/share/zoneinfo/**' (repeatable)",
      collect,
    )
    .option("--drop <glob>", "drop image paths matching GLOB whatever kept them (repeatable)", collect)
    .option(
      "--profile <file>",
      "the profile `slimroot trace` wrote, for --minimize trace (repeatable: the union of several traces)",
      collect,
    )
    .option("--strict", "a library the closure cannot find is an error, not a warning")
    .option(
      "--layers",
      "cpio: one archive per image layer (its files of each Debian package of 1 MiB or more in one of their own), then --add's files, then slimroot's, each compressed on its own and joined; push sends each as a registry layer, so apps on one base, or with one package version, share its blob",
    )
    .option(
      "--probe <probe>",
      "check the image before writing it: boot it and run this probe (repeatable; default for --minimize trace: the profile's probes)",
      collect,
    )
    .option(
      "--allow-profile-exec",
      "let the --profile's exec: probes run their commands on this host (refused otherwise)",
    )
    .option("--no-verify", "do not boot the image to run the probes")
    .option("--verify-timeout <duration>", "how long the probes may take to pass", "2m")
    .option(
      "--kernel <path>",
      "kernel for the verification boot: a directory from kernel fetch or a kernel file (default: the fetched one)",
    )
    .action(async (source: string, command: string[], opts: Record<string, unknown>) => {
      const output = opts.output as string;
      const format = (opts.format as ImageFormat | undefined) ?? diskFormatForFileName(output) ?? "cpio";
      const sizeBytes = opts.size === undefined ? undefined : parseSize(opts.size as string);
      checkSizeOption(format, sizeBytes);
      if (opts.compress !== undefined && !FORMATS[format].compressed)
        throw new UserError(`--compress: only for cpio, not ${format}`);
      if (opts.layers && format !== "cpio") throw new UserError(`--layers: only for cpio, not ${format}`);
      const compression =
        (opts.compress as Compression | undefined) ?? compressionForFileName(output) ?? "gzip";
      const profileFiles = (opts.profile as string[] | undefined) ?? [];
      if (profileFiles.length)
        await checkOutput(
          output,
          profileFiles.map((f) => ({ path: f, what: `--profile ${f}` })),
        );
      const loaded: Profile[] = [];
      for (const f of profileFiles) loaded.push(await loadProfile(f));
      const profile = loaded.length ? mergeProfiles(loaded) : undefined;
      // --probe wins; else a traced build checks what the traces checked (when it boots at all).
      const specs =
        (opts.probe as string[] | undefined) ??
        (opts.minimize === "trace" && opts.verify !== false
          ? [
              ...new Set(
                loaded.flatMap((p, i) => profileProbes(p, profileFiles[i]!, Boolean(opts.allowProfileExec))),
              ),
            ]
          : []);
      const probes = specs.map(parseProbe);
      const verify = opts.verify !== false && probes.length > 0;
      if (verify && !FORMATS[format].bootable)
        throw new UserError(
          `--probe: the verification boot takes a cpio image, not ${format} (give --no-verify)`,
        );
      const verifyTimeoutMs = parseDuration(opts.verifyTimeout as string, "--verify-timeout");
      const bar = byteProgress("pulling");
      const writing = byteProgress(`writing ${compression}`);
      const result = await build({
        ...imageSettings(source, command, opts),
        output,
        format,
        ...(sizeBytes !== undefined ? { sizeBytes } : {}),
        compression,
        minimize: opts.minimize as MinimizeLevel,
        keep: opts.keep as string[] | undefined,
        drop: opts.drop as string[] | undefined,
        strict: Boolean(opts.strict),
        ...(opts.layers ? { layers: true } : {}),
        ...(profile ? { profile } : {}),
        ...(verify
          ? {
              verify: async (image: string) => {
                statusLine(`verifying: ${specs.join(" ")}`);
                // The VM stack is loaded only for a build that boots: it is most of the CLI's code.
                const { verifyImage } = await import("../trace/verify.js");
                return verifyImage(image, {
                  ...(opts.kernel ? { kernel: opts.kernel as string } : {}),
                  probes,
                  readyTimeoutMs: verifyTimeoutMs,
                });
              },
            }
          : {}),
        onProgress: (p) => bar.update(p),
        onLayer: (i, n, name) => {
          bar.stop();
          statusLine(`flattening layer ${i + 1}/${n} ${name.slice(0, 60)}`);
        },
        onWrite: (p) => writing.update(p),
      }).finally(() => {
        bar.stop();
        writing.stop();
        clearStatus();
      });
      const mismatches = loaded.flatMap((p, i) => [
        profileCommandMismatch(p, profileFiles[i]!, result.app.args),
        profileDigestMismatch(p, profileFiles[i]!, result.digest),
      ]);
      for (const w of [...result.warnings, ...mismatches.filter((m) => m !== undefined)])
        process.stderr.write(`slimroot: warning: ${printable(w)}\n`);
      process.stdout.write(
        `${result.output}: ${result.bytes} bytes (${FORMATS[format].compressed ? compression : format}), ${result.files} entries, ${result.arch}, runs ${JSON.stringify(result.app.args)}\n`,
      );
      if (verify) process.stdout.write(`verified: ${specs.join(", ")} passed\n`);
      else if (opts.minimize === "trace" && opts.verify !== false)
        process.stderr.write("slimroot: warning: not verified: the profile has no probes (give --probe)\n");
    });
}

/** "512M", "2G", "1048576" (bytes), "100MiB". */
export function parseSize(text: string): number {
  const m = /^(\d+)\s*([KMG]?)(i?B)?$/i.exec(text.trim());
  if (!m) throw new UserError(`--size ${text}: expected a size such as 512M or 2G`);
  const unit = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2]!.toUpperCase() as "" | "K" | "M" | "G"];
  const bytes = Number(m[1]) * unit;
  if (bytes < 1024 * 1024) throw new UserError(`--size ${text}: at least 1M`);
  return bytes;
}
