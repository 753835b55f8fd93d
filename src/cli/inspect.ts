import { Readable } from "node:stream";
import type { Command } from "commander";
import { describe, identify } from "../artifact/identify.js";
import { hostPlatform, parsePlatform } from "../image/platform.js";
import { renderHtml, reportData } from "../inspect/html.js";
import { formatInspection, inspectArtifact } from "../inspect/inspect.js";
import { writeFileAtomically } from "../output/atomic.js";
import { checkOutput, whyPath } from "../output/output.js";
import { imageInputs } from "../pipeline/output.js";
import { sourceFiles } from "../pipeline/source-files.js";
import { formatRemoteWhy } from "../publish/provenance.js";
import { remoteWhy } from "../publish/pull.js";
import { UserError } from "../util/errors.js";

interface InspectOpts {
  json?: boolean;
  why?: boolean;
  html?: string;
  against?: string;
  platform?: string;
  insecure?: boolean;
}

export function registerInspect(program: Command): void {
  program
    .command("inspect")
    .description("list an image: files, sizes, totals and the app config it carries")
    .argument(
      "<file>",
      "an image: a cpio archive (compressed or not), an initramfs-list directory, a disk image or a kernel; or docker://HOST/REPO[:TAG] pushed by slimroot push (its .why)",
    )
    .option("--json", "machine-readable output")
    .option("--why", "every file, its size, and why it is in (from FILE.why, written by build)")
    .option(
      "--html <page>",
      "write a self-contained page: a treemap of the image coloured by why each file is in",
    )
    .option(
      "--against <source>",
      "with --html: the source image (as for build) to compare sizes and list what was dropped",
    )
    .option(
      "--platform <os/arch>",
      "with --against or docker://: platform to pick from a multi-platform image",
    )
    .option("--insecure", "with --against or docker://: allow plain http for docker:// registries")
    .action(async (file: string, opts: InspectOpts) => {
      // A registry image: its .why, read from the referrer attached to it, not its layer.
      if (file.startsWith("docker://")) {
        if (opts.html || opts.against) throw new UserError("--html: not for a docker:// image");
        const r = await remoteWhy(file, {
          insecure: Boolean(opts.insecure),
          platform: opts.platform ? parsePlatform(opts.platform) : hostPlatform(),
        });
        process.stdout.write(
          opts.json
            ? `${JSON.stringify({ ref: r.where, digest: r.digest, header: r.why.header, reasons: Object.fromEntries(r.why.reasons), missing: r.why.missing }, null, 2)}\n`
            : `${formatRemoteWhy(r)}\n`,
        );
        return;
      }
      if (opts.against && !opts.html) throw new UserError("--against: only with --html");
      if (opts.html) {
        // Never the image it reads, its .why, or the source it compares against.
        const inputs = [
          { path: file, what: file },
          { path: whyPath(file), what: whyPath(file) },
          ...(opts.against ? imageInputs({ source: opts.against, additions: [] }) : []),
        ];
        await checkOutput(opts.html, inputs, { why: false, flag: "--html" });
      }
      const warn = (line: string) => process.stderr.write(`slimroot: ${line}\n`);
      const image = await identify(file);
      if (!opts.html) {
        const r = await inspectArtifact(image, { ...(opts.why ? { why: "required" } : {}), warn });
        process.stdout.write(opts.json ? `${JSON.stringify(r, null, 2)}\n` : `${formatInspection(r)}\n`);
        return;
      }
      // The picture is coloured by reason: use FILE.why when build wrote one, plain sizes otherwise.
      if (image.kind === "kernel")
        throw new UserError(`--html: ${file} is ${describe(image)}: its files cannot be listed here`);
      const r = await inspectArtifact(image, { why: "wanted", warn });
      if (!r.entries.length) throw new UserError(`--html: ${r.unread.at(-1) ?? `${file}: no files`}`);
      const against = opts.against
        ? {
            source: opts.against,
            files: await sourceFiles(opts.against, {
              ...(opts.platform ? { platform: parsePlatform(opts.platform) } : {}),
              insecure: Boolean(opts.insecure),
            }),
          }
        : undefined;
      const html = renderHtml(reportData(r, against));
      await writeFileAtomically(opts.html, Readable.from([Buffer.from(html)]));
      process.stdout.write(`${opts.html}: ${html.length} bytes\n`);
    });
}
