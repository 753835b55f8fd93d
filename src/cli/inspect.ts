import type { Command } from "commander";
import { formatInspection, inspectArchive } from "../inspect/inspect.js";

export function registerInspect(program: Command): void {
  program
    .command("inspect")
    .description("list an initramfs: files, sizes, totals and the app config it carries")
    .argument("<file>", "a cpio archive, compressed or not")
    .option("--json", "machine-readable output")
    .option("--why", "every file, its size, and why it is in (from FILE.why, written by build)")
    .action(async (file: string, opts: { json?: boolean; why?: boolean }) => {
      const r = await inspectArchive(file, { why: opts.why });
      process.stdout.write(opts.json ? `${JSON.stringify(r, null, 2)}\n` : `${formatInspection(r)}\n`);
    });
}
