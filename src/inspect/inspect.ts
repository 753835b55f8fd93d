import { stat } from "node:fs/promises";
import { pipeline } from "node:stream";
import { APP_CONFIG_PATH, type AppConfig, decodeAppConfig } from "../appconfig/appconfig.js";
import { type Compression, decompressor, detectCompression } from "../compress/compress.js";
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from "../cpio/newc.js";
import { type CpioEntry, readCpio } from "../cpio/reader.js";
import { WHY_HEADER, whyPath } from "../pipeline/output.js";
import { nameFromBytes } from "../tree/path.js";
import { Budget, spending } from "../util/budget.js";
import { printable, UserError } from "../util/errors.js";
import { inputStream, readHead, readInputText } from "../util/input-file.js";

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
    throw new UserError(`${file}: ${(err as Error).message}`);
  } finally {
    // A reader that stops early (image-info stops at /init) must not leave a decompressor running.
    plain.destroy();
    raw.destroy();
  }
}

/** Reads OUTPUT.why (written by build): image path -> reason, and its `# key: value` header. */
export async function readWhy(
  file: string,
): Promise<{ reasons: Map<string, string>; header: Map<string, string> }> {
  const text = await readInputText(whyPath(file)).catch((err: Error) => {
    throw new UserError(
      err.message === `${whyPath(file)}: no such file`
        ? `${err.message} (it is written by slimroot build next to the image)`
        : err.message,
    );
  });
  const reasons = new Map<string, string>();
  const header = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (!line) continue;
    if (line.startsWith("#")) {
      const m = /^# ([^:]+): (.*)$/.exec(line);
      if (m) header.set(m[1]!, m[2]!);
      continue;
    }
    const tab = line.indexOf("\t");
    if (tab > 0) reasons.set(line.slice(1, tab), line.slice(tab + 1));
  }
  return { reasons, header };
}

export async function inspectArchive(file: string, opts: { why?: boolean } = {}): Promise<Inspection> {
  // The .why is optional unless --why asks for it (an image copied alone has none).
  const sidecar = opts.why ? await readWhy(file) : await readWhy(file).catch(() => undefined);
  const why = opts.why ? sidecar?.reasons : undefined;
  const result: Inspection = {
    file,
    compression: await sniffCompression(file),
    archiveBytes: (await stat(file)).size,
    contentBytes: 0,
    counts: { files: 0, dirs: 0, symlinks: 0, other: 0 },
    entries: [],
  };
  const compressor = sidecar?.header.get(WHY_HEADER.compressor);
  const cpioSha256 = sidecar?.header.get(WHY_HEADER.cpioSha256);
  if (compressor || cpioSha256)
    result.build = { ...(compressor ? { compressor } : {}), ...(cpioSha256 ? { cpioSha256 } : {}) };
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
    if (why)
      f.why =
        why.get(e.name === "." ? "" : e.name) ?? "(not in the .why file: the image changed after the build?)";
    if (e.name === APP_CONFIG_PATH) result.app = decodeAppConfig(e.body.toString());
    result.entries.push(f);
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
