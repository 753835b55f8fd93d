/**
 * The corpus (test/support/corpus.ts): real apps on Debian packages, each traced with
 * `slimroot trace` (the syscall recorder on), built with `--minimize trace` as an initramfs
 * and as erofs with no `--keep`, and each build's verification boot (at `run`'s default
 * memory) is the check: it runs the app's probe, a request whose answer the app computed.
 *
 * Three boots an app, apps one after the other (2 cores). With SLIMROOT_CORPUS_REPORT=FILE
 * it also measures, per app, the whole image (xz initramfs, `--minimize none`) and the same
 * boot and probe without the recorder (a verified `--minimize none` build, uncompressed as
 * trace builds it), and writes every number to FILE as JSON (the README's corpus table).
 * SLIMROOT_CORPUS=a,b narrows the run to those apps; the slow ones (java) run only when named
 * there or with SLIMROOT_CORPUS_SLOW=1 (`make test-corpus-slow`).
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fetchKernel } from "../src/kernel/fetch.js";
import { decodeProfile } from "../src/trace/profile.js";
import { type CliResult, runCli } from "./support/cli.js";
import { CORPUS, type CorpusApp, SLOW_APPS, slowAppsOn } from "./support/corpus.js";
import { qemusUsing } from "./support/qemu.js";

const reportFile = process.env.SLIMROOT_CORPUS_REPORT;
const only = process.env.SLIMROOT_CORPUS?.split(",").filter(Boolean);
const apps = CORPUS.filter((a) => !only || only.includes(a.name));
const slowSkipped = (a: CorpusApp) =>
  SLOW_APPS.has(a.name) && !only && !slowAppsOn()
    ? `${a.name} is slow under TCG (about 4 min more, plus its fixture): make test-corpus-slow runs it`
    : false;

let work = "";

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-corpus-test-"));
  await fetchKernel({ arch: "amd64" });
});
after(async () => {
  assert.deepEqual(await qemusUsing(work), [], "QEMU processes left behind");
  if (reportFile) await writeFile(reportFile, `${JSON.stringify(results, null, 2)}\n`);
  await rm(work, { recursive: true, force: true });
});

interface Result {
  app: string;
  finds: string;
  probe: string;
  traceSeconds: number;
  /** The traced initramfs: xz when reporting, else gzip. */
  tracedXzBytes: number;
  tracedErofsBytes: number;
  /** Wall time of each verified traced build (build, boot, probe, stop). */
  buildSeconds: { initramfs: number; erofs: number };
  paths: number;
  listed: number;
  missing: number;
  wholeXzBytes?: number;
  /** A verified `--minimize none` build: build, boot without the recorder, probe, stop. */
  plainBootSeconds?: number;
}
const results: Result[] = [];

/** `slimroot ARGS` that must succeed (TMPDIR marks its QEMUs), timed. */
async function ok(what: string, args: string[]): Promise<CliResult & { seconds: number }> {
  const started = Date.now();
  const r = await runCli(args, { TMPDIR: work });
  const seconds = (Date.now() - started) / 1000;
  assert.equal(r.code, 0, `${what}:\n${r.stderr}`);
  assert.deepEqual(await qemusUsing(work), [], `QEMU still running after ${what}`);
  return { ...r, seconds };
}

const bytes = async (f: string) => (await stat(f)).size;

async function corpusApp(a: CorpusApp): Promise<void> {
  const source = await a.source();
  const slow = SLOW_APPS.has(a.name);
  const timeouts = slow ? ["--verify-timeout", "10m"] : [];
  const profile = join(work, `${a.name}.profile`);
  const trace = await ok(`trace ${a.name}`, [
    "trace",
    "-o",
    profile,
    ...(slow ? ["--timeout", "10m"] : []),
    source,
    "--probe",
    a.probe,
  ]);
  const p = decodeProfile(await readFile(profile, "utf8"), profile);
  assert.equal(p.header.recorder, "syscalls", "the syscall recorder ran");
  // No --keep: the profile alone must make each build answer (the verification boot checks).
  const traced = async (out: string) => {
    const b = await ok(`build ${out}`, [
      "build",
      "-o",
      join(work, out),
      source,
      "--minimize",
      "trace",
      "--profile",
      profile,
      ...timeouts,
    ]);
    assert.match(b.stdout, /^verified: .* passed$/m, `${out} was verified`);
    return { bytes: await bytes(join(work, out)), seconds: b.seconds };
  };
  // xz (the table's measure) only when reporting: xz -9e of a JRE takes minutes under TCG load.
  const cpio = await traced(`${a.name}.cpio.${reportFile ? "xz" : "gz"}`);
  const erofs = await traced(`${a.name}.erofs`);
  const r: Result = {
    app: a.name,
    finds: a.finds,
    probe: a.probe,
    traceSeconds: trace.seconds,
    tracedXzBytes: cpio.bytes,
    tracedErofsBytes: erofs.bytes,
    buildSeconds: { initramfs: cpio.seconds, erofs: erofs.seconds },
    paths: p.paths.length,
    listed: p.listed?.length ?? 0,
    missing: p.missing?.length ?? 0,
  };
  if (reportFile) {
    const whole = join(work, `${a.name}-whole.cpio.xz`);
    await ok(`whole ${a.name}`, ["build", "-o", whole, source, "--minimize", "none", "--no-verify"]);
    r.wholeXzBytes = await bytes(whole);
    const plain = join(work, `${a.name}-plain.cpio`);
    const boot = await ok(`plain boot ${a.name}`, [
      "build",
      "-o",
      plain,
      source,
      "--minimize",
      "none",
      "--probe",
      a.probe,
      ...timeouts,
    ]);
    r.plainBootSeconds = boot.seconds;
    await rm(plain, { force: true });
  }
  results.push(r);
  const mb = (n: number) => (n / 1e6).toFixed(2);
  process.stderr.write(
    `corpus ${a.name}: traced ${mb(r.tracedXzBytes)} MB ${reportFile ? "xz" : "gz"}, ${mb(r.tracedErofsBytes)} MB erofs, trace ${r.traceSeconds.toFixed(1)} s${r.wholeXzBytes ? `, whole ${mb(r.wholeXzBytes)} MB xz, plain boot ${r.plainBootSeconds!.toFixed(1)} s` : ""}\n`,
  );
}

describe("the corpus: traced, minimized, and serving as initramfs and erofs", () => {
  for (const a of apps) {
    test(
      `${a.name}: ${a.finds}`,
      { timeout: SLOW_APPS.has(a.name) ? 2_400_000 : 900_000, skip: slowSkipped(a) },
      () => corpusApp(a),
    );
  }
});
