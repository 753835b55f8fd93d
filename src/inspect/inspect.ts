import { stat } from "node:fs/promises";
import { pipeline } from "node:stream";
import { APP_CONFIG_PATH, type AppConfig, decodeAppConfig } from "../appconfig/appconfig.js";
import { type Compression, decompressor, detectCompression } from "../compress/compress.js";
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from "../cpio/newc.js";
import { type CpioEntry, readCpio } from "../cpio/reader.js";
import { checkWhyImage, fileSha256, readWhy, type Why, WhyMissing } from "../pipeline/why.js";
import { nameFromBytes } from "../tree/path.js";
import { Budget, spending } from "../util/budget.js";
import { EnvironmentError, printable, UserError } from "../util/errors.js";
import { inputStream, readHead } from "../util/input-file.js";

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
  compression: Compression;
  archiveBytes: number;
  /** Sum of regular file bodies, counting each hard-linked inode once. */
  contentBytes: number;
  counts: { files: number; dirs: number; symlinks: number; other: number };
  entries: InspectedFile[];
  app?: AppConfig;
  /** From FILE.why's header, when build wrote one: what compressed it, and the cpio's sha256. */
  build?: { compressor?: string; cpioSha256?: string };
  /** With --why: paths the app looked up in its trace that the image did not have. */
  missing?: string[];
}

/** The compression of a file, from its first bytes. */
export async function sniffCompression(file: string): Promise<Compression> {
  return detectCompression(await readHead(file, 8));
}

/** Opens a (possibly compressed) cpio file as a stream of entries. */
export async function* readArchiveFile(file: string): AsyncGenerator<CpioEntry> {
  const kind = await sniffCompression(file);
  const raw = await inputStream(file);
  const plain = decompressor(kind, file);
  pipeline(raw, plain, () => undefined);
  try {
    yield* readCpio(plain);
  } catch (err) {
    // A missing decompressor is the machine's problem (exit 2) and already names the file.
    if (err instanceof EnvironmentError) throw err;
    throw new UserError(`${file}: ${(err as Error).message}`);
  } finally {
    // A reader that stops early (image-info stops at /init) must not leave a decompressor running.
    plain.destroy();
    raw.destroy();
  }
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

export async function inspectArchive(file: string, opts: InspectOptions = {}): Promise<Inspection> {
  const result: Inspection = {
    file,
    compression: await sniffCompression(file),
    archiveBytes: (await stat(file)).size,
    contentBytes: 0,
    counts: { files: 0, dirs: 0, symlinks: 0, other: 0 },
    entries: [],
  };
  // Hashed (when there is a .why) while the entries are read; the .why is used once the hash
  // matches its record.
  const why = readWhy(file);
  const sha256 = why.then(() => fileSha256(file));
  for (const p of [sha256, why]) p.catch(() => undefined);
  if (opts.why === "required") await why; // --why without a readable .why: say so at once
  const counted = new Set<number>();
  // Every entry is held, and the page nests directories: both bounded as when building.
  const budget = new Budget();
  for await (const e of readArchiveFile(file)) {
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
  return result;
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
  lines.push(
    "",
    `${r.file}: ${r.compression}, ${r.archiveBytes} bytes; ${c.files} files, ${c.dirs} directories, ${c.symlinks} symlinks, ${c.other} other; ${r.contentBytes} bytes of file content`,
  );
  if (r.app) {
    lines.push(
      `app: ${JSON.stringify(r.app.args)}`,
      `  env: ${r.app.env.join(" ")}`,
      `  workdir: ${r.app.workdir}  uid: ${r.app.uid}  gid: ${r.app.gid}${r.app.groups.length ? `  groups: ${r.app.groups.join(",")}` : ""}${r.app.user ? `  (user ${r.app.user})` : ""}`,
    );
    if (r.app.ports.length) lines.push(`  ports: ${r.app.ports.join(" ")}`);
  }
  if (r.build) {
    lines.push(`built: compressor ${r.build.compressor ?? "unknown"}`);
    if (r.build.cpioSha256) lines.push(`  cpio sha256: ${r.build.cpioSha256}`);
  }
  return lines.join("\n");
}
