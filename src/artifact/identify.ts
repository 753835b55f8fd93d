/**
 * What is this file? The one place slimroot asks: an initramfs (its compression, /init's
 * architecture, its app config), a disk image (format, the identity the init finds it by,
 * architecture and app config when its tool can read them), a kernel (format, architecture,
 * its config file, the app built into it) or an initramfs-list directory. The first bytes are
 * read once through util/input-file (bounded, never a FIFO or a device); what follows reads
 * only as far as the answer needs (an initramfs up to /init).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AppConfig } from "../appconfig/appconfig.js";
import type { Arch } from "../arch/arch.js";
import type { Compression } from "../compress/compress.js";
import { detectCompression } from "../compress/magic.js";
import type { DiskIdentity } from "../disk/identity.js";
import { DISK_HEAD_BYTES, diskIdentityOf } from "../disk/magic.js";
import { UserError } from "../util/errors.js";
import { openInput, statInput } from "../util/input-file.js";
import { diskFacts } from "./disk.js";
import { findEmbedded } from "./embedded.js";
import { factsBody, type InitramfsFacts, initramfsFacts, readArchiveFile } from "./initramfs.js";
import { configBeside, type KernelKind } from "./kernel.js";
import { KERNEL_HEAD_BYTES, kernelKind } from "./kernel-magic.js";
import { listFacts } from "./list.js";
import { isSnapshotHead, readSnapshotHeader, type SnapshotHeader } from "./snapshot.js";

/** What an image carries about its app; `arch` undefined with `noArch` saying why. */
interface AppFacts {
  arch?: Arch;
  noArch?: string;
  app?: AppConfig;
}

export interface InitramfsArtifact extends AppFacts {
  kind: "initramfs";
  path: string;
  bytes: number;
  compression: Compression;
}

export interface DiskArtifact extends AppFacts {
  kind: "disk";
  path: string;
  bytes: number;
  identity: DiskIdentity;
}

export interface KernelArtifact extends KernelKind {
  kind: "kernel";
  path: string;
  bytes: number;
  /** Its build config (config-RELEASE beside vmlinuz-RELEASE), when there is one. */
  config?: string;
  /**
   * The slimroot app built into it (kernel build --embed), "none", or "not looked for" when
   * identify was asked not to (it decompresses the whole kernel).
   */
  embedded: AppFacts | "none" | "not looked for";
}

export interface ListArtifact extends AppFacts {
  kind: "list";
  path: string;
  /** The list's and the bodies' bytes. */
  bytes: number;
  entries: number;
}

/** A VM saved with its app ready (slimroot snapshot): what `run` resumes. */
export interface SnapshotArtifact {
  kind: "snapshot";
  path: string;
  bytes: number;
  arch: Arch;
  header: SnapshotHeader;
  /** Where the compressed migration stream starts. */
  streamOffset: number;
}

export type Artifact = InitramfsArtifact | DiskArtifact | KernelArtifact | ListArtifact | SnapshotArtifact;

export interface IdentifyOptions {
  /** Look for an app inside a kernel (default true): decompresses the kernel. */
  embedded?: boolean;
}

const HEAD_BYTES = Math.max(KERNEL_HEAD_BYTES, DISK_HEAD_BYTES);
const NEWC = Buffer.from("070701");

/**
 * What a file's first bytes say it is: the shallow half of identify, for a caller that needs
 * no more (a --volume's disk identity) and for identify itself.
 */
export type Sniffed =
  | { kind: "kernel"; kernel: KernelKind }
  | { kind: "disk"; identity: DiskIdentity }
  | { kind: "initramfs"; compression: Compression }
  | { kind: "snapshot" }
  | { kind: "unknown" };

/** The first bytes of regular file `path`, read once through util/input-file, and what they are. */
export async function sniffFile(path: string): Promise<{ size: number; sniffed: Sniffed }> {
  const { fh, size } = await openInput(path);
  let head: Buffer;
  try {
    const buf = Buffer.alloc(HEAD_BYTES);
    head = buf.subarray(0, (await fh.read(buf, 0, buf.length, 0)).bytesRead);
  } finally {
    await fh.close();
  }
  return { size, sniffed: sniffHead(head) };
}

function sniffHead(head: Buffer): Sniffed {
  // Before the compressions: a snapshot is zstd frames behind its header frame.
  if (isSnapshotHead(head)) return { kind: "snapshot" };
  // A kernel first: an arm64 Image.gz is gzip too.
  const kernel = kernelKind(head);
  if (kernel) return { kind: "kernel", kernel };
  const identity = diskIdentityOf(head);
  if (identity) return { kind: "disk", identity };
  const compression = detectCompression(head);
  if (compression !== "none" || head.subarray(0, NEWC.length).equals(NEWC))
    return { kind: "initramfs", compression };
  return { kind: "unknown" };
}

/** Identifies `path`; a file that is none of these is one UserError naming it. */
export async function identify(path: string, o: IdentifyOptions = {}): Promise<Artifact> {
  const st = await statInput(path, path, { directory: true });
  if (st.isDirectory()) return { kind: "list", path, ...(await listFacts(path)) };
  const { size, sniffed: s } = await sniffFile(path);
  switch (s.kind) {
    case "kernel": {
      const config = configBeside(path);
      return {
        kind: "kernel",
        path,
        bytes: size,
        ...s.kernel,
        ...(config ? { config } : {}),
        embedded: o.embedded === false ? "not looked for" : await embeddedFacts(path, s.kernel),
      };
    }
    case "disk":
      return {
        kind: "disk",
        path,
        bytes: size,
        identity: s.identity,
        ...(await diskFacts(path, s.identity.format)),
      };
    case "initramfs": {
      const facts: InitramfsFacts = await initramfsFacts(
        readArchiveFile(path, s.compression, { body: factsBody }),
        path,
      );
      return { kind: "initramfs", path, bytes: size, compression: s.compression, ...facts };
    }
    case "snapshot": {
      const { header, streamOffset } = await readSnapshotHeader(path);
      return { kind: "snapshot", path, bytes: size, arch: header.arch, header, streamOffset };
    }
    case "unknown":
      throw new UserError(
        `${path}: not an image slimroot knows (no cpio archive, compressed or not; no ext4, erofs or squashfs; no kernel)`,
      );
  }
}

/** The kind of kernel an artifact is (what the launchers and the kernel identity take). */
export function kernelKindOf(a: KernelArtifact): KernelKind {
  return { arch: a.arch, format: a.format, ...(a.gzip ? { gzip: a.gzip } : {}) };
}

async function embeddedFacts(path: string, kind: KernelKind) {
  const scratch = await mkdtemp(join(tmpdir(), "slimroot-identify-"));
  try {
    return (await findEmbedded(path, kind, scratch))?.facts ?? "none";
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** The architecture of an image's app, or the UserError saying why there is none. */
export function artifactArch(a: Artifact): Arch {
  if (a.kind === "kernel") {
    if (typeof a.embedded === "object") return a.embedded.arch ?? a.arch;
    return a.arch;
  }
  if (a.kind === "snapshot") return a.arch;
  if (!a.arch) throw new UserError(a.noArch ?? `${a.path}: no architecture`);
  return a.arch;
}

/** One line for a kind a command does not take (`what`: "an initramfs", ...). */
export function describe(a: Artifact): string {
  switch (a.kind) {
    case "initramfs":
      return `an initramfs (${a.compression === "none" ? "uncompressed" : a.compression})`;
    case "disk":
      return `${a.identity.format === "squashfs" ? "a" : "an"} ${a.identity.format} disk image`;
    case "kernel":
      return `a kernel (${a.format}, ${a.arch})`;
    case "list":
      return "an initramfs-list directory";
    case "snapshot":
      return `a snapshot of a running VM (${a.arch}, from ${a.header.created})`;
  }
}
