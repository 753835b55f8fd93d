/**
 * `slimroot run APP.snap`: the plan of a resume. The machine is the one the snapshot's plan
 * describes (artifact/snapshot.ts holds it), with this run's port forwards and stop policy,
 * started with QEMU's `-incoming defer` instead of a boot. Everything is checked before QEMU
 * reads any state (run starts QEMU beside the checks, to overlap its start-up), each refusal
 * one line: the same QEMU version as the one that saved it, the RAM file, the kernel file and
 * every disk present with the digest the snapshot names (a VM's RAM holds the page cache of
 * its disks, so a disk that changed since would be read wrong).
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import type { Arch } from "../arch/arch.js";
import { identify, type SnapshotArtifact, sniffFile } from "../artifact/identify.js";
import type { NamedFile, SnapshotHeader } from "../artifact/snapshot.js";
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

/** A page of guest RAM. */
const PAGE = 4096;
const ZERO_PAGE = Buffer.alloc(PAGE);
const READ_BYTES = 1 << 20;

/**
 * A RAM file's digest, the same however its zeros are stored (holes, or written zeros after a
 * copy that filled them): sha256 of each non-zero 4 KiB page's number (u64 BE) and bytes, in
 * order, then the file's size. Hashing costs what the guest wrote, not its RAM; reading a
 * hole costs the kernel a memset. Also returns the non-zero pages' bytes.
 */
export async function ramDigest(
  path: string,
): Promise<{ sha256: string; bytes: number; nonZeroBytes: number }> {
  const fh = await open(path, "r");
  try {
    const hash = createHash("sha256");
    const buf = Buffer.alloc(READ_BYTES);
    const index = Buffer.alloc(8);
    let pos = 0;
    let nonZero = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, READ_BYTES, pos);
      if (bytesRead === 0) break;
      for (let at = 0; at < bytesRead; at += PAGE) {
        const page = buf.subarray(at, Math.min(at + PAGE, bytesRead));
        if (page.equals(ZERO_PAGE.subarray(0, page.length))) continue;
        index.writeBigUInt64BE(BigInt((pos + at) / PAGE));
        hash.update(index).update(page);
        nonZero += page.length;
      }
      pos += bytesRead;
    }
    const size = Buffer.alloc(8);
    size.writeBigUInt64BE(BigInt(pos));
    return { sha256: hash.update(size).digest("hex"), bytes: pos, nonZeroBytes: nonZero };
  } finally {
    await fh.close();
  }
}

/** How a file is digested: its bytes (sha256), or a RAM file's non-zero pages (ramDigest). */
type DigestKind = "sha256" | "ram";
const DIGESTS: Record<DigestKind, (path: string) => Promise<string>> = {
  sha256: fileSha256,
  ram: async (path) => (await ramDigest(path)).sha256,
};

/**
 * The digest of a file a resume checks (a 17.8 MB vmlinux costs a busy host 0.1-0.2 s, a RAM
 * file of 256 MiB more), remembered by what the kernel says of the file: device, inode, size,
 * mtime and ctime in ns. Any write or utime changes ctime, which no caller can set back; so a
 * hit is the same bytes. A file changed in the last 2 s is hashed and not remembered, so a
 * change in the same clock tick as the one before cannot hide behind an equal ctime (git's
 * "racy" rule).
 */
export async function cachedDigest(
  path: string,
  kind: DigestKind = "sha256",
): Promise<{ sha256: string; bytes: number }> {
  const st = await stat(path, { bigint: true });
  const key = `${kind === "sha256" ? "" : `${kind}:`}${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  const hit = await digests.get(key);
  if (hit) return { sha256: hit, bytes: Number(st.size) };
  const startedNs = BigInt(Date.now()) * 1_000_000n;
  const sha256 = await DIGESTS[kind](path);
  const after = await stat(path, { bigint: true });
  const same = after.ctimeNs === st.ctimeNs && after.size === st.size;
  if (same && startedNs - st.ctimeNs > SETTLED_NS) await digests.set(key, sha256);
  return { sha256, bytes: Number(after.size) };
}

/** The sha256 of a file a resume checks, remembered (cachedDigest). */
export const cachedSha256 = (path: string) => cachedDigest(path);

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
async function checkNamed(
  f: NamedFile,
  what: string,
  snap: string,
  kind: DigestKind = "sha256",
): Promise<void> {
  const st = await stat(f.path).catch(() => undefined);
  if (!st?.isFile())
    throw new RunFailure(`${snap}: its ${what} ${f.path} is missing; the snapshot cannot resume`);
  const now = st.size === f.bytes ? await cachedDigest(f.path, kind) : undefined;
  if (now?.sha256 !== f.sha256)
    throw new RunFailure(
      `${snap}: its ${what} ${f.path} changed since the snapshot was made (${now ? `sha256 ${now.sha256.slice(0, 12)}…, saved with ${f.sha256.slice(0, 12)}…` : `${st.size} bytes, saved with ${f.bytes}`}); refusing to resume`,
    );
}

/**
 * Options a snapshot fixed when it was made: given again, they are refused (`--cpus` only when
 * it differs from the snapshot's: it always has a value).
 */
function fixedOptions(o: BootOptions, saved: BootPlan): string[] {
  return [
    o.kernel !== undefined && "--kernel",
    typeof saved.cpus === "number" &&
      o.cpus !== saved.cpus &&
      `--cpus ${o.cpus} (the snapshot has ${saved.cpus})`,
    o.tap !== undefined && "--tap",
    o.guestIp !== undefined && "--guest-ip",
    o.vsockCid !== undefined && "--vsock",
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
  const saved = h.plan as unknown as BootPlan;
  const fixed = [...fixedOptions(o, saved), ...(volumes ? ["--volume"] : [])];
  if (fixed.length)
    throw new RunFailure(
      `${a.path}: ${fixed.join(", ")}: fixed when the snapshot was made (resume takes -p, --timeout, --stop-timeout, --timeline, --standby)`,
    );
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
    // Private: pages are read from the file as the guest touches them and copied when it
    // writes one, so the file is never written and every resume of it shares its pages.
    ram: { path: ramPath(a), shared: false },
  };
}

/** Where snapshot `a`'s RAM file is: its header's name, in the snapshot's directory. */
export const ramPath = (a: { path: string; header: Pick<SnapshotHeader, "ram"> }): string =>
  join(dirname(resolve(a.path)), a.header.ram.file);

/**
 * Every check before a resume loads its state, each refusal one line, in this order: the QEMU
 * version, the RAM file, the kernel file, each disk (missing, or another digest).
 */
export async function checkResume(a: SnapshotArtifact): Promise<void> {
  const h = a.header;
  // Asked while the files are hashed (QEMU takes a while to load its libraries), once per binary.
  const asked = knownQemuVersion(h.arch);
  asked.catch(() => {});
  const files = Promise.all([
    checkNamed({ ...h.ram, path: ramPath(a) }, "RAM file", a.path, "ram"),
    checkNamed(h.kernel, "kernel", a.path),
    ...h.disks.map((d) => checkNamed(d, "disk", a.path)),
  ]);
  files.catch(() => {});
  const state = checkState(a);
  state.catch(() => {});
  const qemu = await asked;
  if (qemu.version !== h.qemu.version)
    throw new RunFailure(
      `${a.path}: made by ${h.qemu.version}, this host has ${qemu.version}; a snapshot resumes only on the QEMU that made it`,
    );
  await state;
  await files;
}

/** The state stream after the header, as saved: its size, and its sha256 when the header has it. */
async function checkState(a: SnapshotArtifact): Promise<void> {
  const h = a.header;
  const bytes = a.bytes - a.streamOffset;
  const damaged = (what: string) => new RunFailure(`${a.path}: damaged: ${what}; make the snapshot again`);
  if (bytes !== h.memory.streamBytes)
    throw damaged(
      `its saved state is ${bytes} bytes, ${h.memory.streamBytes} were saved (cut off or added to)`,
    );
  if (h.streamSha256 === undefined) return;
  const now = await fileSha256(a.path, { start: a.streamOffset, bytes });
  if (now !== h.streamSha256)
    throw damaged(
      `its saved state's sha256 is ${now.slice(0, 12)}…, ${h.streamSha256.slice(0, 12)}… was saved`,
    );
}
