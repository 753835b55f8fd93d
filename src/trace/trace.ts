/**
 * `slimroot trace`: boots the whole (unminimized) image with the init in record mode, runs
 * the probes, stops the app, and writes the image paths it opened as a profile for
 * `build --minimize trace`.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import type { Arch } from "../arch/arch.js";
import { cachedKernel } from "../kernel/fetch.js";
import { fetchedKernelDir, readManifest } from "../kernel/manifest.js";
import { writeFileAtomically } from "../output/atomic.js";
import { checkOutput } from "../output/output.js";
import { type BuildOptions, build } from "../pipeline/build.js";
import { imageInputs } from "../pipeline/output.js";
import { treeFs } from "../tree/image-fs.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";
import type { PortForward } from "../vm/ports.js";
import { profilePaths } from "./paths.js";
import type { Probe } from "./probe.js";
import {
  encodeProfile,
  loadProfile,
  mergeProfiles,
  type Profile,
  type ProfileHeader,
  profileDigestMismatch,
  RECORDER,
} from "./profile.js";
import { probeSession } from "./session.js";

export interface TraceOptions {
  /** How to build the image: the same source and settings `build` will get. */
  image: Omit<BuildOptions, "output" | "compression" | "minimize" | "profile" | "keep" | "drop" | "strict">;
  output: string;
  kernel?: string;
  probes: Probe[];
  publish: PortForward[];
  memMiB?: number;
  cpus: number;
  readyTimeoutMs: number;
  settleMs: number;
  stopGraceMs: number;
  /** Without probes: stop the app after this long. */
  runTimeoutMs?: number;
  echo?: NodeJS.WritableStream;
  log?: (line: string) => void;
  /** Add to the profile already at `output` (another path through the app) instead of replacing it. */
  merge?: boolean;
}

export interface TraceResult {
  output: string;
  /** Image paths written to the profile. */
  paths: number;
  /** Directories listed. */
  listed: number;
  /** Lookups that failed (the image does not have the path). */
  missing: number;
  /** Paths used that the image does not have (made at run time). */
  created: number;
  lost: number;
  status: number;
}

/** What the profile says about the kernel: its release, or the file given. */
async function kernelLabel(kernel: string | undefined, arch: Arch): Promise<string> {
  if (kernel === undefined) {
    const m = await cachedKernel(fetchedKernelDir(arch));
    return m ? `${m.version} (fetched)` : "default";
  }
  const st = await stat(kernel).catch(() => undefined);
  if (st?.isDirectory()) return (await readManifest(kernel).catch(() => undefined))?.version ?? kernel;
  return kernel;
}

export async function traceImage(o: TraceOptions): Promise<TraceResult> {
  await checkOutput(o.output, imageInputs(o.image), { why: false });
  const log = o.log ?? (() => {});
  const scratch = await mkdtemp(join(tmpdir(), "slimroot-trace-"));
  trackTempPath(scratch);
  try {
    const image = join(scratch, "image.cpio");
    log("building the whole image");
    // Uncompressed: the guest unpacks it fastest, and it lives only for this run.
    const built = await build({ ...o.image, output: image, compression: "none", minimize: "none" });
    log(`booting it in record mode (${(built.bytes / 1e6).toFixed(1)} MB)`);
    const s = await probeSession({
      image,
      ...(o.kernel ? { kernel: o.kernel } : {}),
      probes: o.probes,
      publish: o.publish,
      ...(o.memMiB !== undefined ? { memMiB: o.memMiB } : {}),
      cpus: o.cpus,
      trace: true,
      readyTimeoutMs: o.readyTimeoutMs,
      settleMs: o.settleMs,
      stopGraceMs: o.stopGraceMs,
      ...(o.runTimeoutMs !== undefined ? { runTimeoutMs: o.runTimeoutMs } : {}),
      ...(o.echo ? { echo: o.echo } : {}),
    });
    const { paths, listed, missing, created } = profilePaths(s.traced, treeFs(built.tree));
    const header: ProfileHeader = {
      image: o.image.source,
      ...(built.digest ? { digest: built.digest } : {}),
      command: JSON.stringify(built.app.args),
      probes: JSON.stringify(o.probes.map((p) => p.spec)),
      date: new Date().toISOString(),
      kernel: await kernelLabel(o.kernel, built.arch),
      arch: built.arch,
      "exit status": String(s.status),
      // Only when the init recorded lookups: else the builder's rules for fanotify's blind spots run.
      ...(s.recorder ? { recorder: RECORDER } : {}),
      ...(s.lost ? { truncated: `${s.lost} events not recorded (the init's table was full)` } : {}),
    };
    if (s.recorder)
      if (s.recorder)
        log(
          `recorded opens and file system calls (${s.recorder === "seccomp" ? "ptrace at the calls a seccomp filter picks" : "ptrace at every call: the kernel has no seccomp filter"})`,
        );
    let profile: Profile = { header, paths, listed, missing, lookups: s.recorder !== undefined };
    if (o.merge && existsSync(o.output)) {
      const before = await loadProfile(o.output);
      const mismatch = profileDigestMismatch(before, o.output, built.digest);
      if (mismatch) log(`warning: ${mismatch}`);
      // The header is this run's (image, date, kernel), the probes both runs'.
      const first = {
        ...before,
        header: { ...before.header, ...header, probes: before.header.probes ?? "[]" },
      };
      profile = mergeProfiles([first, profile]);
    }
    await writeFileAtomically(o.output, Readable.from([encodeProfile(profile)]));
    return {
      output: o.output,
      paths: profile.paths.length,
      listed: profile.listed?.length ?? 0,
      missing: profile.missing?.length ?? 0,
      created: created.length,
      lost: s.lost,
      status: s.status,
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
    untrackTempPath(scratch);
  }
}
