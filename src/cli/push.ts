import type { Command } from "commander";
import { archOf } from "../arch/arch.js";
import { parsePlatform } from "../image/platform.js";
import { pushFiles } from "../publish/push.js";
import { UserError } from "../util/errors.js";
import { sourceDateEpoch } from "./image-options.js";
import { byteProgress } from "./progress.js";

interface PushOpts {
  insecure?: boolean;
  platform?: string;
}

export function registerPush(program: Command): void {
  program
    .command("push")
    .description(
      "push images to an OCI registry in slimroot's form (docs/push.md); several files: one per architecture",
    )
    .argument("<files-and-ref...>", "FILE... docker://HOST/REPO[:TAG]")
    .option("--insecure", "plain http, to a loopback registry only")
    .option("--platform <os/arch>", "the platform of a file whose own cannot be read here (an erofs image)")
    .action(async (args: string[], opts: PushOpts) => {
      const ref = args.at(-1)!;
      const files = args.slice(0, -1);
      if (files.length === 0) throw new UserError(`push: give FILE... then docker://HOST/REPO[:TAG]`);
      const bar = byteProgress("pushing");
      try {
        const r = await pushFiles(files, ref, {
          insecure: Boolean(opts.insecure),
          epoch: sourceDateEpoch(),
          ...(opts.platform ? { architecture: archOf(parsePlatform(opts.platform).architecture) } : {}),
          progress: (p) => bar.update(p),
        });
        bar.stop();
        process.stdout.write(`${r.digest}\n`);
      } finally {
        bar.stop();
      }
    });
}
