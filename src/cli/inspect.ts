import type { Command } from "commander";
import { formatInspection, inspectArchive } from "../inspect/inspect.js";

export function registerInspect(program: Command): void {
  program
    .command("inspect")
    .description("list an initramfs: files, sizes, totals and the app config it carries")
    .argument("<file>", "a cpio archive, compressed or not")
    .option("--json", "machine-readable output")
    .action(async (file: string, opts: { json?: boolean }) => {
      const r = await inspectArchive(file);
      process.stdout.write(opts.json ? `${JSON.stringify(r, null, 2)}\n` : `${formatInspection(r)}\n`);
    });
}
