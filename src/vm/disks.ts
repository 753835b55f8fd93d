/**
 * A disk image as the root, and --volume disks: what QEMU attaches, what run.conf tells the
 * init (init/root.c) and which modules it needs. The initramfs of a disk boot holds only the
 * init, the modules and run.conf.
 */
import { stat } from "node:fs/promises";
import { buffer } from "node:stream/consumers";
import type { Arch } from "../arch/arch.js";
import { sniffFile } from "../artifact/identify.js";
import { writeCpio } from "../cpio/writer.js";
import type { DiskFormat } from "../disk/formats.js";
import { type DiskIdentity, isReadOnlyFormat } from "../disk/identity.js";
import { INIT_PATH, initBinaryPath } from "../guest/init-binary.js";
import type { KernelConfig } from "../kernel/config.js";
import { missingOptions } from "../kernel/requirements.js";
import { normalizeImagePath } from "../tree/path.js";
import { hostFileContent } from "../tree/spool.js";
import { Tree } from "../tree/tree.js";
import { RunFailure } from "./failure.js";

/**
 * A disk for the VM: the image itself when it is a disk format (mounted at "/"), or a
 * `--volume FILE:/path[:ro]`. Read-only disks are attached read-only, so the VMM itself
 * refuses writes to the file.
 */
export interface Disk {
  path: string;
  /** Where the init mounts it: "/" for the root. */
  mount: string;
  readOnly: boolean;
  /** Its filesystem, when known (slimroot's disk plan): the kernel's config is checked for it. */
  format?: DiskFormat;
}

/** What the init needs to find and mount the disks (src/vm/disks.ts plans it). */
export interface DiskBoot {
  /** The image is a disk: the initrd then carries only the init. */
  rootIsDisk: boolean;
  /** run.conf `root` / `volume` records. */
  records: readonly string[];
  /** Kernel modules: virtio_blk, the filesystems, overlay. */
  modules: readonly string[];
}

export interface VolumeSpec {
  file: string;
  /** Absolute path in the guest. */
  path: string;
  readOnly: boolean;
}

/** `FILE:/path[:ro]`. */
export function parseVolume(text: string): VolumeSpec {
  const m = /^(.+?):(\/[^:]*)(?::(ro|rw))?$/.exec(text);
  if (!m) throw new RunFailure(`--volume ${text}: expected FILE:/path[:ro]`);
  return { file: m[1]!, path: `/${normalizeImagePath(m[2]!)}`, readOnly: m[3] === "ro" };
}

export interface DiskPlan extends DiskBoot {
  disks: Disk[];
  records: string[];
  modules: string[];
}

/** What `run` read of a --volume before planning: whether it is a file, its filesystem's identity. */
export interface VolumeFacts extends VolumeSpec {
  isFile: boolean;
  identity?: DiskIdentity;
}

/**
 * Reads each volume's identity (the only I/O of a disk plan), asked of artifact/ as every
 * "what is this file?" is; only its first bytes are read (a volume's contents are the app's).
 */
export async function volumeFacts(volumes: readonly VolumeSpec[]): Promise<VolumeFacts[]> {
  const out: VolumeFacts[] = [];
  for (const v of volumes) {
    const st = await stat(v.file).catch(() => undefined);
    const sniffed = st?.isFile() ? (await sniffFile(v.file)).sniffed : undefined;
    const identity = sniffed?.kind === "disk" ? sniffed.identity : undefined;
    out.push({ ...v, isFile: Boolean(st?.isFile()), ...(identity ? { identity } : {}) });
  }
  return out;
}

const record = (d: DiskIdentity, readOnly: boolean) =>
  `${d.fstype} ${d.offset} ${d.id.toString("hex")} ${readOnly ? "ro" : "rw"}`;

/**
 * The disks of a run: `root` (the image, when it is a disk; undefined for an initramfs) then
 * the volumes. A read-only root is attached read-only, so its bytes never change. Pure: the
 * boot plan (plan.ts) calls it with what `run` read.
 */
export function planDisks(
  root: { path: string; identity: DiskIdentity } | undefined,
  rootReadOnly: boolean,
  volumes: readonly VolumeFacts[],
): DiskPlan {
  const plan: DiskPlan = { rootIsDisk: Boolean(root), disks: [], records: [], modules: [] };
  const seen = new Map<string, string>();
  const fstypes = new Set<string>();
  const add = (file: string, id: DiskIdentity) => {
    const key = `${id.offset}:${id.id.toString("hex")}`;
    const other = seen.get(key);
    if (other) throw new RunFailure(`${file}: the same filesystem as ${other} (attach each disk once)`);
    seen.set(key, file);
    fstypes.add(id.fstype);
  };
  if (root) {
    const ro = rootReadOnly || isReadOnlyFormat(root.identity.format);
    add(root.path, root.identity);
    plan.disks.push({ path: root.path, mount: "/", readOnly: ro, format: root.identity.format });
    plan.records.push(`root ${record(root.identity, ro)}`);
    // A read-only root runs under an overlay; a read-write one gets one over an image's
    // non-empty /tmp and /run (init/root.c).
    plan.modules.push("overlay");
  }
  const paths = new Set<string>();
  for (const v of volumes) {
    if (!v.isFile) throw new RunFailure(`--volume ${v.file}: no such file`);
    if (v.path === "/") throw new RunFailure(`--volume ${v.file}:/: the root is the image`);
    if (paths.has(v.path))
      throw new RunFailure(`--volume ${v.file}:${v.path}: ${v.path} is already a volume`);
    paths.add(v.path);
    const id = v.identity;
    if (!id) throw new RunFailure(`--volume ${v.file}: not an ext4, erofs or squashfs image`);
    add(v.file, id);
    const ro = v.readOnly || isReadOnlyFormat(id.format);
    plan.disks.push({ path: v.file, mount: v.path, readOnly: ro, format: id.format });
    plan.records.push(`volume ${record(id, ro)} ${v.path}`);
  }
  // Names a kernel builds in (Debian's has ext4) are simply not found among its modules.
  if (plan.disks.length) plan.modules.push("virtio_blk", ...fstypes);
  return plan;
}

/**
 * Why the kernel cannot mount these disks, when its config is known (a fetched kernel),
 * rather than letting the init wait for a mount that cannot work.
 */
export function kernelDiskProblem(
  disks: readonly Disk[],
  c: KernelConfig | undefined,
  label: string,
): string | undefined {
  if (c === undefined || !disks.length) return undefined;
  const driver = missingOptions(c, "disks");
  if (driver.length)
    return `kernel ${label} cannot attach disks: it lacks ${driver.map((m) => m.option).join(", ")}`;
  for (const d of disks) {
    const missing = d.format ? missingOptions(c, `disk:${d.format}`) : [];
    if (missing.length)
      return `kernel ${label} cannot mount ${d.path}: it lacks ${missing.map((m) => m.option).join(", ")}`;
  }
  return undefined;
}

/** The newc archive with only our init, for a disk root. */
export async function initCpio(arch: Arch): Promise<Buffer> {
  const path = initBinaryPath(arch);
  const tree = new Tree();
  tree.set(INIT_PATH, {
    inode: {
      kind: "file",
      mode: 0o755,
      uid: 0,
      gid: 0,
      mtime: 0,
      content: hostFileContent(path, (await stat(path)).size),
    },
    layer: 0,
  });
  return buffer(writeCpio(tree, { clampMtime: 0 }));
}
