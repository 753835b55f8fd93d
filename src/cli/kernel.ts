import { type Command, Option } from "commander";
import { archOf } from "../arch/arch.js";
import { hostPlatform } from "../image/platform.js";
import { fetchKernel } from "../kernel/fetch.js";

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
}
