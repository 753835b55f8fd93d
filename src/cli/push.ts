import type { Command } from "commander";
import { archOf } from "../arch/arch.js";
import { parsePlatform } from "../image/platform.js";
import { parseForms } from "../publish/forms.js";
import { pushFiles } from "../publish/push.js";
import { UserError } from "../util/errors.js";
import { sourceDateEpoch } from "./image-options.js";
import { collect } from "./parse.js";
import { byteProgress } from "./progress.js";

interface PushOpts {
  insecure?: boolean;
  platform?: string;
  as?: string[];
  kernel?: string[];
  hypervisor?: string;
  mountFrom?: string[];
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
    .option(
      "--as <forms>",
      "the forms to write, one tag each (repeatable or a comma list): slimroot (TAG), urunc, flintlock, containerdisk (TAG-FORM)",
      collect,
    )
    .option(
      "--kernel <file>",
      "the kernel the urunc, flintlock and containerdisk forms carry (one per architecture)",
      collect,
    )
    .option("--hypervisor <vmm>", "--as urunc: the VMM urunc runs (qemu, firecracker, cloud-hypervisor)")
    .option(
      "--mount-from <repo>",
      "a repository on the same registry that may hold the blobs already (repeatable): mounted, not sent again",
      collect,
    )
    .action(async (args: string[], opts: PushOpts) => {
      const ref = args.at(-1)!;
      const files = args.slice(0, -1);
      if (files.length === 0) throw new UserError(`push: give FILE... then docker://HOST/REPO[:TAG]`);
      const forms = opts.as ? parseForms(opts.as) : undefined;
      if (opts.hypervisor && !forms?.includes("urunc"))
        throw new UserError("--hypervisor: only with --as urunc");
      const bar = byteProgress("pushing");
      try {
        const r = await pushFiles(files, ref, {
          insecure: Boolean(opts.insecure),
          epoch: sourceDateEpoch(),
          ...(opts.platform ? { architecture: archOf(parsePlatform(opts.platform).architecture) } : {}),
          ...(forms ? { forms } : {}),
          ...(opts.kernel ? { kernels: opts.kernel } : {}),
          ...(opts.hypervisor ? { hypervisor: opts.hypervisor } : {}),
          ...(opts.mountFrom ? { mountFrom: opts.mountFrom } : {}),
          progress: (p) => bar.update(p),
          warn: (line) => process.stderr.write(`slimroot: warning: ${line}\n`),
        });
        bar.stop();
        // Without --as: the digest alone, as before; with it: a line per tag.
        if (!forms) process.stdout.write(`${r.digest}\n`);
        else for (const t of r.tags) process.stdout.write(`${t.digest} ${t.tag}\n`);
      } finally {
        bar.stop();
      }
    });
}
