import { type Command, Option } from "commander";
import { archOf } from "../arch/arch.js";
import { artifactArch, describe, identify } from "../artifact/identify.js";
import { hostPlatform } from "../image/platform.js";
import { buildKernel } from "../kernel/build.js";
import { embedImage } from "../kernel/embed.js";
import { fetchKernel } from "../kernel/fetch.js";
import { UserError } from "../util/errors.js";

interface KernelBuildFlags {
  arch?: string;
  source?: string;
  configFragment?: string[];
  force?: boolean;
  embed?: string;
  output?: string;
}

export function registerKernel(program: Command): void {
  const kernel = program.command("kernel").description("guest kernels for slimroot run");
  kernel
    .command("fetch")
    .description(
      "download Debian's cloud kernel with apt and keep the kernel, its config and the modules slimroot needs; prints the directory",
    )
    .addOption(
      new Option("--arch <arch>", "kernel architecture (default: this machine's)").choices([
        "amd64",
        "arm64",
      ]),
    )
    .option("--force", "fetch again even if the cache has one")
    .action(async (opts: { arch?: string; force?: boolean }) => {
      const arch = archOf(opts.arch ?? hostPlatform().architecture);
      const r = await fetchKernel({
        arch,
        force: Boolean(opts.force),
        log: (line) => process.stderr.write(`${line}\n`),
      });
      if (r.fetched) {
        process.stderr.write(
          `${r.manifest.version}: ${r.manifest.modules.length} modules (${r.manifest.modules.map((m) => m.name).join(" ")})\n`,
        );
      }
      process.stdout.write(`${r.dir}\n`);
    });
  kernel
    .command("build")
    .description(
      "build slimroot's minimal microVM kernel (tinyconfig + src/kernel/config, all built in) from Debian's linux-source-6.1; cached; prints the directory",
    )
    .addOption(
      new Option("--arch <arch>", "kernel architecture (default: this machine's)").choices([
        "amd64",
        "arm64",
      ]),
    )
    .option("--source <dir>", "a kernel source tree (5.10 or later) instead of Debian's package")
    .option(
      "--config-fragment <file>",
      "kernel config lines to apply after slimroot's (repeatable)",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option("--force", "build again even if the cache has one")
    .option("--embed <image>", "build this slimroot image into the kernel (one bootable file; needs -o)")
    .option("-o, --output <file>", "with --embed: the kernel file to write")
    .action(async (opts: KernelBuildFlags) => {
      if (Boolean(opts.embed) !== Boolean(opts.output))
        throw new UserError(opts.embed ? "--embed needs -o FILE" : "-o is for --embed");
      let last = "";
      const common = {
        ...(opts.source ? { source: opts.source } : {}),
        ...(opts.configFragment ? { fragments: opts.configFragment } : {}),
        force: Boolean(opts.force),
        progress: (phase: string, pct?: number) => {
          const line = pct === undefined ? phase : `${phase} ${pct}%`;
          if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${line}`);
          else if (pct === undefined || pct % 10 === 0) process.stderr.write(`${line}\n`);
          last = line;
        },
      };
      const endProgress = () => {
        if (last && process.stderr.isTTY) process.stderr.write("\n");
      };
      if (opts.embed && opts.output) {
        const image = await identify(opts.embed, { embedded: false });
        if (image.kind !== "initramfs")
          throw new UserError(
            `--embed ${opts.embed}: ${describe(image)}; it takes an initramfs (slimroot build)`,
          );
        // The image's /init says which kernel it needs.
        const arch = opts.arch ? archOf(opts.arch) : artifactArch(image);
        const r = await embedImage({ ...common, arch, image, output: opts.output });
        endProgress();
        process.stderr.write(`${r.output}: ${r.bytes} bytes (kernel ${r.kernelDir})\n`);
        process.stdout.write(`${r.output}\n`);
        return;
      }
      const arch = archOf(opts.arch ?? hostPlatform().architecture);
      const r = await buildKernel({ ...common, arch });
      endProgress();
      if (r.built) process.stderr.write(`${r.manifest.version}: built (${arch})\n`);
      process.stdout.write(`${r.dir}\n`);
    });
}
