/**
 * `slimroot run APP.snap`: the plan of a resume. The machine is the one the snapshot's plan
 * describes (artifact/snapshot.ts holds it), with this run's port forwards and stop policy,
 * started with QEMU's `-incoming defer` instead of a boot. Everything is checked before QEMU
 * reads any state (run starts QEMU beside the checks, to overlap its start-up), each refusal
 * one line: the same QEMU version as the one that saved it, the kernel file and every disk
 * present with the digest the snapshot names (a VM's RAM holds the page cache of its disks,
 * so a disk that changed since would be read wrong).
 */
import { execFile } from "node:child_process";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import type { Arch } from "../arch/arch.js";
import { identify, type SnapshotArtifact, sniffFile } from "../artifact/identify.js";
import type { NamedFile } from "../artifact/snapshot.js";
import { fileSha256 } from "../output/why.js";
import { cacheRoot } from "../util/cache-dir.js";
import { hostExecutable } from "../util/host-path.js";
import { RunFailure } from "./failure.js";
import type { BootOptions, BootPlan } from "./plan.js";
import { qemuBinary } from "./qemu.js";

/** The file's sha256 and size (remembered for its resumes, cachedSha256). */
export async function nameByDigest(path: string): Promise<NamedFile> {
  return { path, ...(await cachedSha256(path)) };
}

/** `qemu-system-* --version`'s first line: what a snapshot is tied to. */
export async function qemuVersion(arch: Arch): Promise<{ binary: string; version: string }> {
  const binary = qemuBinary(arch);
  const r = await new Promise<{ ok: boolean; out: string }>((done) =>
    execFile(binary, ["--version"], (err, stdout, stderr) =>
      done({ ok: !err, out: err ? (stderr || err.message).trim() : stdout }),
    ),
  );
  if (!r.ok) throw new RunFailure(`${binary} --version failed: ${r.out}`);
  return { binary, version: r.out.split("\n")[0]!.trim() };
}

/**
 * A small JSON map in the cache root, for what a resume would otherwise compute again each time.
 * A cache, not an output: written whole through a temp name, at most `max` entries (the newest);
 * a damaged or lost file only costs the next resume the work.
 */
function jsonCache<T>(name: string, max: number, valid: (v: unknown) => v is T) {
  // Where the cache root is now ($SLIMROOT_CACHE may change between calls in tests).
  const path = () => join(cacheRoot(), name);
  const read = async (): Promise<Record<string, unknown>> => {
    try {
      const v = JSON.parse(await readFile(path(), "utf8")) as unknown;
      return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
    } catch {
      return {};
    }
  };
  return {
    async get(key: string): Promise<T | undefined> {
      const hit = (await read())[key];
      return valid(hit) ? hit : undefined;
    },
    async set(key: string, value: T): Promise<void> {
      const entries = Object.entries({ ...(await read()), [key]: value });
      const file = path();
      const tmp = `${file}.${process.pid}.tmp`;
      await mkdir(dirname(file), { recursive: true })
        .then(() => writeFile(tmp, JSON.stringify(Object.fromEntries(entries.slice(-max)))))
        .then(() => rename(tmp, file))
        .catch(() => rm(tmp, { force: true }));
    },
  };
}

const qemuVersions = jsonCache(
  "qemu-versions.json",
  64,
  (v): v is { binary: string; version: string } =>
    typeof (v as { version?: unknown } | undefined)?.version === "string" &&
    typeof (v as { binary?: unknown }).binary === "string",
);

/**
 * qemuVersion, remembered per binary (path, inode, size, mtime) in the cache: starting QEMU to
 * ask costs a resume a few hundred milliseconds on a busy host. An upgraded QEMU is another file.
 */
async function knownQemuVersion(arch: Arch): Promise<{ binary: string; version: string }> {
  const exe = hostExecutable(qemuBinary(arch));
  const st = exe ? await stat(exe).catch(() => undefined) : undefined;
  if (!st) return qemuVersion(arch);
  const key = `${exe}:${st.ino}:${st.size}:${st.mtimeMs}`;
  const hit = await qemuVersions.get(key);
  if (hit) return hit;
  const v = await qemuVersion(arch);
  await qemuVersions.set(key, v);
  return v;
}

const digests = jsonCache(
  "digests.json",
  256,
  (v): v is string => typeof v === "string" && /^[0-9a-f]{64}$/.test(v),
);

/** A file is remembered only once its last change is this old: a later change gets a later ctime. */
const SETTLED_NS = 2_000_000_000n;

/**
 * The sha256 of a file a resume checks (a 17.8 MB vmlinux costs a busy host 0.1-0.2 s),
 * remembered by what the kernel says of the file: device, inode, size, mtime and ctime in ns.
 * Any write or utime changes ctime, which no caller can set back; so a hit is the same bytes.
 * A file changed in the last 2 s is hashed and not remembered, so a change in the same clock
 * tick as the one before cannot hide behind an equal ctime (git's "racy" rule).
 */
export async function cachedSha256(path: string): Promise<{ sha256: string; bytes: number }> {
  const st = await stat(path, { bigint: true });
  const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  const hit = await digests.get(key);
  if (hit) return { sha256: hit, bytes: Number(st.size) };
  const startedNs = BigInt(Date.now()) * 1_000_000n;
  const sha256 = await fileSha256(path);
  const after = await stat(path, { bigint: true });
  const same = after.ctimeNs === st.ctimeNs && after.size === st.size;
  if (same && startedNs - st.ctimeNs > SETTLED_NS) await digests.set(key, sha256);
  return { sha256, bytes: Number(after.size) };
}

/** The snapshot `image` is, or undefined when it is something else. */
export async function snapshotOf(image: string): Promise<SnapshotArtifact | undefined> {
  // Anything else (a directory, a missing file) is for the boot path to name.
  const sniffed = await sniffFile(image).then(
    (r) => r.sniffed,
    () => undefined,
  );
  if (sniffed?.kind !== "snapshot") return undefined;
  const a = await identify(image);
  return a.kind === "snapshot" ? a : undefined;
}

/** A file the snapshot names, as it is now: one line when it is gone or changed. */
async function checkNamed(f: NamedFile, what: string, snap: string): Promise<void> {
  const st = await stat(f.path).catch(() => undefined);
  if (!st?.isFile())
    throw new RunFailure(`${snap}: its ${what} ${f.path} is missing; the snapshot cannot resume`);
  const now = st.size === f.bytes ? await cachedSha256(f.path) : undefined;
  if (now?.sha256 !== f.sha256)
    throw new RunFailure(
      `${snap}: its ${what} ${f.path} changed since the snapshot was made (sha256 ${now ? `${now.sha256.slice(0, 12)}…` : `size ${st.size}`}, saved with ${f.sha256.slice(0, 12)}…); refusing to resume`,
    );
}

/** Options a snapshot fixed when it was made: given again, they are refused. */
function fixedOptions(o: BootOptions): string[] {
  return [
    o.kernel !== undefined && "--kernel",
    o.modules !== undefined && "--modules",
    o.memMiB !== undefined && "--mem",
    o.env.length > 0 && "-e",
    o.args !== undefined && "a command",
    o.readOnlyFlag && "--read-only",
    o.vmm !== "qemu" && `--vmm ${o.vmm}`,
  ].filter((x): x is string => typeof x === "string");
}

/**
 * The resume's plan: the snapshot's own, with this run's forwards and stop policy. Options a
 * snapshot fixed are refused here, before anything starts; the files are checked by
 * checkResume, which run starts beside QEMU and waits for before QEMU reads any state.
 */
export function planResume(a: SnapshotArtifact, o: BootOptions, volumes: number): BootPlan {
  const h = a.header;
  const fixed = [...fixedOptions(o), ...(volumes ? ["--volume"] : [])];
  if (fixed.length)
    throw new RunFailure(
      `${a.path}: ${fixed.join(", ")}: fixed when the snapshot was made (resume takes -p, --timeout, --stop-timeout, --timeline)`,
    );
  const saved = h.plan as unknown as BootPlan;
  return {
    ...saved,
    reportKey: h.reportKey,
    network: { kind: "user", forwards: o.forwards },
    stop: {
      how: "ctrl-alt-del",
      graceMs: o.stopGraceMs,
      ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
    },
    // The first boot's initrd is in the saved RAM: nothing is joined or passed again.
    initrd: [],
    notes: [],
    control: true,
    resume: { snapshot: resolve(a.path) },
  };
}

/**
 * Every check before a resume loads its state, each refusal one line, in this order: the QEMU
 * version, the kernel file, each disk (missing, or another sha256).
 */
export async function checkResume(a: SnapshotArtifact): Promise<void> {
  const h = a.header;
  // Asked while the files are hashed (QEMU takes a while to load its libraries), once per binary.
  const asked = knownQemuVersion(h.arch);
  asked.catch(() => {});
  const files = Promise.all([
    checkNamed(h.kernel, "kernel", a.path),
    ...h.disks.map((d) => checkNamed(d, "disk", a.path)),
  ]);
  files.catch(() => {});
  const qemu = await asked;
  if (qemu.version !== h.qemu.version)
    throw new RunFailure(
      `${a.path}: made by ${h.qemu.version}, this host has ${qemu.version}; a snapshot resumes only on the QEMU that made it`,
    );
  await files;
}
