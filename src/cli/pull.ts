import type { Command } from "commander";
import { hostPlatform, parsePlatform } from "../image/platform.js";
import { checkOutput } from "../output/output.js";
import { pullFile } from "../publish/pull.js";
import { byteProgress } from "./progress.js";

interface PullOpts {
  output: string;
  platform?: string;
  insecure?: boolean;
}

export function registerPull(program: Command): void {
  program
    .command("pull")
    .description(
      "pull an image pushed by slimroot push back to a file, byte for byte, with the .why attached to it",
    )
    .argument("<ref>", "docker://HOST/REPO[:TAG|@DIGEST]")
    .requiredOption("-o, --output <file>", "where to write it")
    .option("--platform <os/arch>", "platform to pick from an index (default: this machine's)")
    .option("--insecure", "allow plain http for docker:// registries")
    .action(async (ref: string, opts: PullOpts) => {
      await checkOutput(opts.output, []);
      const bar = byteProgress("pulling");
      try {
        const r = await pullFile(ref, opts.output, {
          insecure: Boolean(opts.insecure),
          platform: opts.platform ? parsePlatform(opts.platform) : hostPlatform(),
          progress: (p) => bar.update(p),
          why: true,
        });
        bar.stop();
        process.stdout.write(`${r.digest}\n`);
      } finally {
        bar.stop();
      }
    });
}
