/**
 * A slimroot snapshot (`slimroot snapshot`, docs/snapshot.md): a VM saved once its app was
 * ready, resumed by `slimroot run APP.snap`. Two files: the guest's RAM as it was
 * (APP.snap.ram, sparse: pages never written are holes) and APP.snap, read by zstd as it is:
 *
 *   a zstd skippable frame (magic 0x184D2A5E, little-endian u32 length) holding
 *     "SLIMROOT-SNAPSHOT 1\n" + the JSON header (SnapshotHeader)
 *   zstd frames: QEMU's migration stream without the guest RAM (x-ignore-shared): the
 *     devices' and CPUs' state
 *
 * so `zstd -dc APP.snap` is the migration stream and QEMU reads it with `migrate-incoming exec:`,
 * the RAM file mapped private (copy-on-write): a resume's cost does not grow with the guest's
 * RAM, and any number of VMs resume from one RAM file, which none of them writes.
 * The header names what the VM needs again to resume by digest: the RAM file, the kernel file
 * and the disks (each checked before a resume), and, for the record, the initrd's parts
 * (unpacked into RAM at the first boot: the saved RAM holds them, the files are not needed again).
 * Format 1 (slimroot before the RAM file: the RAM inside the stream) is refused by name.
 */
import type { Arch } from "../arch/arch.js";
import { UserError } from "../util/errors.js";
import { openInput } from "../util/input-file.js";

/** A zstd skippable frame's magic (0x184D2A5E), as it is on disk. */
const FRAME_MAGIC = Buffer.from([0x5e, 0x2a, 0x4d, 0x18]);
const TAG = "SLIMROOT-SNAPSHOT 1\n";
/** The bytes that say "a slimroot snapshot": the frame's magic, its length, the tag. */
export const SNAPSHOT_HEAD_BYTES = 8 + TAG.length;
/** A header larger than this is not one of ours. */
const MAX_HEADER = 1 << 20;

/** A file named by content. */
export interface NamedFile {
  path: string;
  sha256: string;
  bytes: number;
}

/** The format this slimroot writes and reads. */
export const SNAPSHOT_FORMAT = 2;

/** The RAM file of snapshot `snap`: beside it, named after it. */
export const ramFileOf = (snap: string): string => `${snap}.ram`;

export interface SnapshotHeader {
  format: typeof SNAPSHOT_FORMAT;
  /** ISO time the VM was saved. */
  created: string;
  arch: Arch;
  /** The QEMU that saved it (`--version`'s first line): only the same one resumes it. */
  qemu: { binary: string; version: string };
  kernel: NamedFile;
  /**
   * The guest's RAM (docs/snapshot.md): `file` is a name in the snapshot's directory (the two
   * move together), `sha256` the digest of its non-zero pages (vm/resume.ts ramDigest), so a
   * copy that filled its holes with zeros is the same RAM; `bytes` its size, the guest's RAM.
   */
  ram: { file: string; sha256: string; bytes: number };
  /** Root disk first, then volumes (all read-only), in the VM's order. */
  disks: NamedFile[];
  /** The initrd's parts at the first boot (generated ones, our init and run.conf, have no file). */
  initrd: { kind: string; path?: string; sha256?: string; bytes: number }[];
  /** The boot plan the VM was started with (vm/plan.ts BootPlan, forwards left out): a resume builds the same machine. */
  plan: Record<string, unknown>;
  /** The guest init's report key (vm/report.ts): its exit report after a resume opens with it. */
  reportKey: string;
  /**
   * What the VM held: guest RAM (MiB), RAM in use in the guest when it was frozen (MemTotal -
   * MemFree), bytes of non-zero RAM pages (in the RAM file), the RAM file's allocated bytes
   * on disk (its zero pages made holes), the state stream's bytes as saved (zstd, without the RAM).
   */
  memory: {
    guestMiB: number;
    inUseBytes: number;
    nonZeroBytes: number;
    ramFileBytes: number;
    streamBytes: number;
  };
  /**
   * The sha256 of the state stream as saved (the bytes after the header, `memory.streamBytes`
   * of them): a cut-off or damaged file is refused before QEMU reads it. Absent in the
   * snapshots of a slimroot before it, which are checked by their size only.
   */
  streamSha256?: string;
}

/** Whether `head` (a file's first bytes) opens a slimroot snapshot. */
export function isSnapshotHead(head: Buffer): boolean {
  return (
    head.length >= SNAPSHOT_HEAD_BYTES &&
    head.subarray(0, 4).equals(FRAME_MAGIC) &&
    head.subarray(8, SNAPSHOT_HEAD_BYTES).toString("latin1") === TAG
  );
}

/** The skippable frame that opens a snapshot file, holding `h`. */
export function snapshotHeaderFrame(h: SnapshotHeader): Buffer {
  const body = Buffer.from(TAG + JSON.stringify(h));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(body.length);
  return Buffer.concat([FRAME_MAGIC, len, body]);
}

/** The header of snapshot `path`, and where its stream starts; a damaged header is one UserError. */
export async function readSnapshotHeader(
  path: string,
): Promise<{ header: SnapshotHeader; streamOffset: number }> {
  const { fh, size } = await openInput(path);
  try {
    const head = Buffer.alloc(8);
    await fh.read(head, 0, 8, 0);
    const len = head.readUInt32LE(4);
    if (!head.subarray(0, 4).equals(FRAME_MAGIC) || len > MAX_HEADER || 8 + len > size)
      throw new UserError(`${path}: not a slimroot snapshot (damaged header frame)`);
    const body = Buffer.alloc(len);
    await fh.read(body, 0, len, 8);
    const text = body.toString("utf8");
    if (!text.startsWith(TAG)) throw new UserError(`${path}: not a slimroot snapshot`);
    let header: SnapshotHeader;
    try {
      header = JSON.parse(text.slice(TAG.length)) as SnapshotHeader;
    } catch {
      throw new UserError(`${path}: a slimroot snapshot with a damaged header (not JSON)`);
    }
    if ((header as { format?: unknown } | null)?.format === 1)
      throw new UserError(
        `${path}: a snapshot of an earlier slimroot (format 1, the RAM inside the file); this one resumes format ${SNAPSHOT_FORMAT} (the RAM in a file beside it): make it again with slimroot snapshot`,
      );
    const problem = headerProblem(header);
    if (problem) throw new UserError(`${path}: a slimroot snapshot with a damaged header (${problem})`);
    return { header, streamOffset: 8 + len };
  } finally {
    await fh.close();
  }
}

const isNamed = (f: unknown): f is NamedFile => {
  const n = f as NamedFile;
  return (
    typeof n === "object" &&
    n !== null &&
    typeof n.path === "string" &&
    /^[0-9a-f]{64}$/.test(n.sha256) &&
    Number.isSafeInteger(n.bytes)
  );
};

function headerProblem(h: SnapshotHeader): string | undefined {
  if (typeof h !== "object" || h === null) return "not an object";
  if (h.format !== SNAPSHOT_FORMAT)
    return `format ${String(h.format)}, this slimroot reads ${SNAPSHOT_FORMAT}`;
  if (h.arch !== "amd64" && h.arch !== "arm64") return "arch";
  if (typeof h.qemu?.version !== "string" || typeof h.qemu.binary !== "string") return "qemu";
  if (!isNamed(h.kernel)) return "kernel";
  const ram = h.ram as Partial<SnapshotHeader["ram"]> | undefined;
  if (
    typeof ram?.file !== "string" ||
    ram.file === "" ||
    ram.file.includes("/") ||
    ram.file === ".." ||
    !/^[0-9a-f]{64}$/.test(ram.sha256 ?? "") ||
    !Number.isSafeInteger(ram.bytes)
  )
    return "ram";
  if (!Array.isArray(h.disks) || !h.disks.every(isNamed)) return "disks";
  if (!Array.isArray(h.initrd)) return "initrd";
  if (typeof h.plan !== "object" || h.plan === null) return "plan";
  if (typeof h.reportKey !== "string" || !/^[0-9a-f]{32,128}$/.test(h.reportKey)) return "reportKey";
  if (typeof h.memory?.guestMiB !== "number" || !Number.isSafeInteger(h.memory.streamBytes)) return "memory";
  if (h.streamSha256 !== undefined && !/^[0-9a-f]{64}$/.test(h.streamSha256)) return "streamSha256";
  return undefined;
}
