import { APP_CONFIG_PATH, type AppConfig, decodeAppConfig } from "../appconfig/appconfig.js";
import type { Arch } from "../arch/arch.js";
import { diskEntries } from "../artifact/disk.js";
import { type Artifact, describe, type InitramfsArtifact, type ListArtifact } from "../artifact/identify.js";
import { readArchiveFile } from "../artifact/initramfs.js";
import type { KernelFormat } from "../artifact/kernel.js";
import { readListDir } from "../artifact/list.js";
import type { Compression } from "../compress/compress.js";
import type { ListEntry } from "../cpio/gen-list.js";
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from "../cpio/newc.js";
import type { DiskFormat } from "../disk/formats.js";
import { checkWhyImage, fileSha256, readWhy, type Why, WhyMissing } from "../output/why.js";
import { nameFromBytes } from "../tree/path.js";
import { Budget, spending } from "../util/budget.js";
import { printable, UserError } from "../util/errors.js";

export interface InspectedFile {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  ino: number;
  nlink: number;
  target?: string;
  rdev?: [number, number];
  /** With --why: why the build kept it. */
  why?: string;
}

export interface Inspection {
  file: string;
  kind: Artifact["kind"];
  /** What it is, in words (artifact/identify's describe). */
  what: string;
  /** An initramfs's; "none" for every other kind. */
  compression: Compression;
  /** The file's bytes (a list directory's: the list and its bodies). */
  archiveBytes: number;
  /** Sum of regular file bodies, counting each hard-linked inode once. */
  contentBytes: number;
  counts: { files: number; dirs: number; symlinks: number; other: number };
  entries: InspectedFile[];
  app?: AppConfig;
  /** Of the app's /init (a kernel's own, for a kernel). */
  arch?: Arch;
  /** One line each for what could not be read (a disk's files, an erofs disk's app). */
  unread: string[];
  /** A disk's format and the bytes the init finds it by (hex, at `offset`). */
  disk?: { format: DiskFormat; offset: number; id: string };
  /** A kernel's format, its config file, and whether a slimroot app is built in. */
  kernel?: { format: KernelFormat; config?: string; embedded: boolean | "not looked for" };
  /** From FILE.why's header, when build wrote one: what compressed it, and the cpio's sha256. */
  build?: { compressor?: string; cpioSha256?: string };
  /** With --why: paths the app looked up in its trace that the image did not have. */
  missing?: string[];
}

export interface InspectOptions {
  /**
   * Why each file is in, from FILE.why: "required" fails if it is missing, unreadable or
   * written for another image; "wanted" goes on without reasons, saying why through `warn`.
   */
  why?: "required" | "wanted";
  /** One line for a .why that is not used (without `why`, a missing .why is not worth one). */
  warn?: (line: string) => void;
}

/**
 * FILE.why, once it is known to be written with FILE as it is (`sha256`); else undefined,
 * or the error when the reasons are required. A stale .why would put another build's
 * reasons and compressor on this image.
 */
async function checkedWhy(
  file: string,
  read: Promise<Why>,
  sha256: Promise<string>,
  o: InspectOptions,
): Promise<Why | undefined> {
  try {
    const why = await read;
    checkWhyImage(why, file, await sha256);
    return why;
  } catch (err) {
    if (!(err instanceof UserError) || o.why === "required") throw err;
    if (o.why === "wanted") o.warn?.(`${err.message}; showing sizes without reasons`);
    else if (!(err instanceof WhyMissing)) o.warn?.(`${err.message}; ignored`);
    return undefined;
  }
}

/**
 * Reads every kind artifact/identify knows back: an initramfs or a list directory entry by
 * entry (with reasons from the .why); a disk or a kernel as what identify read of it, with one
 * line in `unread` for what cannot be read on the host.
 */
export async function inspectArtifact(a: Artifact, opts: InspectOptions = {}): Promise<Inspection> {
  if (a.kind === "initramfs") return inspectArchive(a, opts);
  if (opts.why === "required" && a.kind !== "disk")
    throw new UserError(
      `--why: ${a.path} is ${describe(a)}: reasons are read for an image with its .why only`,
    );
  const base = {
    file: a.path,
    kind: a.kind,
    what: describe(a),
    compression: "none" as const,
    archiveBytes: a.bytes,
    contentBytes: 0,
    counts: { files: 0, dirs: 0, symlinks: 0, other: 0 },
    entries: [],
    unread: [] as string[],
  };
  if (a.kind === "list") return { ...base, ...(await listEntries(a)) };
  if (a.kind === "snapshot")
    return {
      ...base,
      arch: a.arch,
      unread: [`${a.path}: a saved VM; its header names what it was made from`],
    };
  if (a.kind === "disk") {
    const { format, offset, id } = a.identity;
    const listed = await diskEntries(a.path, format);
    if (typeof listed === "string" && opts.why === "required") throw new UserError(`--why: ${listed}`);
    // What the listing read that identify could not (an erofs image is extracted whole).
    const facts = typeof listed === "string" ? undefined : listed.facts;
    const arch = a.arch ?? facts?.arch;
    const app = a.app ?? facts?.app;
    const noArch = arch ? undefined : (facts?.noArch ?? a.noArch);
    const { why, sha256 } = startWhy(a.path);
    const result: Inspection = {
      ...base,
      what: describe(a),
      disk: { format, offset, id: id.toString("hex") },
      ...(arch ? { arch } : {}),
      ...(app ? { app } : {}),
      unread: [...(noArch ? [noArch] : []), ...(typeof listed === "string" ? [listed] : [])],
    };
    for (const e of typeof listed === "string" ? [] : listed.entries) {
      const type = e.mode & S_IFMT;
      if (type === S_IFREG) {
        result.counts.files++;
        result.contentBytes += e.size;
      } else if (type === S_IFDIR) result.counts.dirs++;
      else if (type === S_IFLNK) result.counts.symlinks++;
      else result.counts.other++;
      result.entries.push({ ...e, nlink: 1 });
    }
    if (typeof listed !== "string") await addWhy(result, why, sha256, opts);
    return result;
  }
  const embedded = typeof a.embedded === "object" ? a.embedded : undefined;
  return {
    ...base,
    arch: a.arch,
    kernel: {
      format: a.format,
      ...(a.config ? { config: a.config } : {}),
      embedded: a.embedded === "not looked for" ? a.embedded : Boolean(embedded),
    },
    ...(embedded?.app ? { app: embedded.app } : {}),
    unread: embedded ? [`${a.path}: the files of the built-in image are not listed`] : [],
  };
}

export async function inspectArchive(
  image: InitramfsArtifact,
  opts: InspectOptions = {},
): Promise<Inspection> {
  const file = image.path;
  const result: Inspection = {
    file,
    kind: "initramfs",
    what: describe(image),
    compression: image.compression,
    archiveBytes: image.bytes,
    contentBytes: 0,
    counts: { files: 0, dirs: 0, symlinks: 0, other: 0 },
    entries: [],
    ...(image.arch ? { arch: image.arch } : {}),
    unread: [],
  };
  // Hashed (when there is a .why) while the entries are read; the .why is used once the hash
  // matches its record.
  const { why, sha256 } = startWhy(file);
  if (opts.why === "required") await why; // --why without a readable .why: say so at once
  const counted = new Set<number>();
  // Every entry is held, and the page nests directories: both bounded as when building.
  const budget = new Budget();
  for await (const e of readArchiveFile(file, image.compression)) {
    spending(file, () => budget.entry(e.name));
    const type = e.mode & S_IFMT;
    const f: InspectedFile = {
      path: e.name,
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
      size: e.fileSize,
      ino: e.ino,
      nlink: e.nlink,
    };
    if (type === S_IFREG) {
      result.counts.files++;
      if (e.nlink < 2 || !counted.has(e.ino)) {
        result.contentBytes += e.fileSize;
        if (e.fileSize > 0) counted.add(e.ino);
      }
    } else if (type === S_IFDIR) result.counts.dirs++;
    else if (type === S_IFLNK) {
      result.counts.symlinks++;
      f.target = nameFromBytes(e.body);
    } else {
      result.counts.other++;
      if (e.rdevMajor || e.rdevMinor) f.rdev = [e.rdevMajor, e.rdevMinor];
    }
    if (e.name === APP_CONFIG_PATH) result.app = decodeAppConfig(e.body.toString());
    result.entries.push(f);
  }
  await addWhy(result, why, sha256, opts);
  return result;
}

/** Reasons and the build's record from FILE.why onto `result`, once FILE.why is FILE's. */
async function addWhy(result: Inspection, why: Promise<Why>, sha256: Promise<string>, opts: InspectOptions) {
  const file = result.file;
  const sidecar = await checkedWhy(file, why, sha256, opts);
  if (sidecar) {
    const { compressor, cpioSha256 } = sidecar.header;
    if (compressor || cpioSha256)
      result.build = { ...(compressor ? { compressor } : {}), ...(cpioSha256 ? { cpioSha256 } : {}) };
    if (opts.why && sidecar.missing.length) result.missing = sidecar.missing;
    if (opts.why)
      for (const f of result.entries)
        f.why =
          sidecar.reasons.get(f.path === "." ? "" : f.path) ??
          "(not in the .why file: the image changed after the build?)";
  }
}

/** FILE.why and FILE's sha256 (hashed while the entries are read), read early. */
function startWhy(file: string): { why: Promise<Why>; sha256: Promise<string> } {
  const why = readWhy(file);
  const sha256 = why.then(() => fileSha256(file));
  for (const p of [sha256, why]) p.catch(() => undefined);
  return { why, sha256 };
}

const LIST_TYPE: Record<ListEntry["type"], number> = {
  file: S_IFREG,
  dir: S_IFDIR,
  slink: S_IFLNK,
  pipe: S_IFIFO,
  sock: S_IFSOCK,
  nod: 0,
};

/** A list directory's entries, as an archive's (each file's size is its body's). */
async function listEntries(
  a: ListArtifact,
): Promise<Pick<Inspection, "entries" | "counts" | "contentBytes" | "app" | "arch">> {
  const counts = { files: 0, dirs: 0, symlinks: 0, other: 0 };
  const entries: InspectedFile[] = [];
  let contentBytes = 0;
  for (const [ino, { entry, size }] of (await readListDir(a.path)).entries()) {
    const type = entry.type === "nod" ? (entry.dev === "b" ? S_IFBLK : S_IFCHR) : LIST_TYPE[entry.type];
    const names = entry.type === "file" ? entry.names : [entry.name];
    const common = {
      mode: type | entry.mode,
      uid: entry.uid,
      gid: entry.gid,
      ino: ino + 1,
      nlink: names.length,
    };
    if (entry.type === "file") {
      counts.files += names.length;
      contentBytes += size;
    } else if (entry.type === "dir") counts.dirs++;
    else if (entry.type === "slink") counts.symlinks++;
    else counts.other++;
    for (const name of names)
      entries.push({
        path: name.replace(/^\/+/, "") || ".",
        ...common,
        size,
        ...(entry.type === "slink" ? { target: entry.target } : {}),
        ...(entry.type === "nod" ? { rdev: [entry.major, entry.minor] as [number, number] } : {}),
      });
  }
  return {
    entries,
    counts,
    contentBytes,
    ...(a.app ? { app: a.app } : {}),
    ...(a.arch ? { arch: a.arch } : {}),
  };
}

const TYPE_CHAR: Record<number, string> = {
  [S_IFSOCK]: "s",
  [S_IFLNK]: "l",
  [S_IFREG]: "-",
  [S_IFBLK]: "b",
  [S_IFDIR]: "d",
  [S_IFCHR]: "c",
  [S_IFIFO]: "p",
};

/** "drwxr-xr-x" style, with s/S and t/T. */
export function modeString(mode: number): string {
  const bits = "rwxrwxrwx";
  let s = TYPE_CHAR[mode & S_IFMT] ?? "?";
  for (let i = 0; i < 9; i++) s += mode & (1 << (8 - i)) ? bits[i] : "-";
  const chars = s.split("");
  if (mode & 0o4000) chars[3] = mode & 0o100 ? "s" : "S";
  if (mode & 0o2000) chars[6] = mode & 0o010 ? "s" : "S";
  if (mode & 0o1000) chars[9] = mode & 0o001 ? "t" : "T";
  return chars.join("");
}

export function formatInspection(r: Inspection): string {
  const lines: string[] = [];
  for (const e of r.entries) {
    const size = e.rdev ? `${e.rdev[0]},${e.rdev[1]}` : String(e.size);
    const link = e.target !== undefined ? ` -> ${printable(e.target)}` : "";
    const why = e.why !== undefined ? `  # ${printable(e.why)}` : "";
    lines.push(
      `${modeString(e.mode)} ${`${e.uid}:${e.gid}`.padEnd(11)} ${size.padStart(10)}  /${printable(e.path === "." ? "" : e.path)}${link}${why}`,
    );
  }
  for (const m of r.missing ?? [])
    lines.push(
      `${"?".padEnd(35)}  ${printable(m)}  # looked up in the trace, not in the image: nothing kept`,
    );
  const c = r.counts;
  if (r.kind === "initramfs" || r.kind === "list")
    lines.push(
      "",
      `${r.file}: ${r.kind === "list" ? "initramfs-list" : r.compression}, ${r.archiveBytes} bytes; ${c.files} files, ${c.dirs} directories, ${c.symlinks} symlinks, ${c.other} other; ${r.contentBytes} bytes of file content`,
    );
  else
    lines.push(
      `${r.file}: ${r.what}, ${r.archiveBytes} bytes${r.arch ? `; ${r.arch}` : ""}${r.entries.length ? `; ${c.files} files, ${c.dirs} directories, ${c.symlinks} symlinks, ${c.other} other; ${r.contentBytes} bytes of file content` : ""}`,
    );
  if (r.disk)
    lines.push(
      r.disk.format === "squashfs"
        ? `  identity: its ${r.disk.id.length / 2}-byte superblock`
        : `  identity: uuid ${r.disk.id} at byte ${r.disk.offset}`,
    );
  if (r.kernel) {
    const e = r.kernel.embedded;
    lines.push(`  config: ${r.kernel.config ?? "none beside it"}`);
    lines.push(`  app built in: ${e === "not looked for" ? e : e ? "yes" : "no"}`);
  }
  if (r.app) {
    lines.push(
      `app: ${JSON.stringify(r.app.args)}`,
      `  env: ${r.app.env.join(" ")}`,
      `  workdir: ${r.app.workdir}  uid: ${r.app.uid}  gid: ${r.app.gid}${r.app.groups.length ? `  groups: ${r.app.groups.join(",")}` : ""}${r.app.user ? `  (user ${r.app.user})` : ""}`,
    );
    if (r.app.ports.length) lines.push(`  ports: ${r.app.ports.join(" ")}`);
  }
  for (const line of r.unread) lines.push(`not read: ${line}`);
  if (r.build) {
    lines.push(`built: compressor ${r.build.compressor ?? "unknown"}`);
    if (r.build.cpioSha256) lines.push(`  cpio sha256: ${r.build.cpioSha256}`);
  }
  return lines.join("\n");
}
