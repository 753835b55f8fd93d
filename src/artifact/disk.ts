/**
 * What a disk image says about its app (/init's architecture, /etc/slimroot/app.conf), read
 * on the host without mounting it: one file at a time through each format's Debian tool, its
 * output bounded. erofs-utils 1.5 reads no single file: an erofs image is extracted whole
 * into a temp directory (see erofsExtracted) and read there.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { APP_CONFIG_PATH, decodeAppConfig } from "../appconfig/appconfig.js";
import type { DiskFormat } from "../disk/formats.js";
import { elfArch } from "../elf/elf.js";
import { INIT_PATH } from "../guest/init-binary.js";
import { readHead } from "../util/input-file.js";
import { missingTools, toolNotFound } from "../util/tools.js";
import type { InitramfsFacts } from "./initramfs.js";

/** How each format's tool writes one image file to stdout (erofs: none can, see erofsExtracted). */
const FILE_READERS: Readonly<
  Record<Exclude<DiskFormat, "erofs">, (image: string, path: string) => [string, string[]]>
> = {
  // debugfs says "File not found" on stderr and exits 0: an empty output is a missing file.
  ext4: (image, path) => ["debugfs", ["-R", `cat /${path}`, image]],
  squashfs: (image, path) => ["unsquashfs", ["-no-progress", "-cat", image, `/${path}`]],
};

/** The first `max` bytes of one image file (a path without the leading /), undefined when absent. */
type ReadImageFile = (path: string, max: number) => Promise<Buffer | undefined>;

/** An app config is a few lines; anything larger is not ours. */
const MAX_APP_CONF = 1 << 20;
/** An ELF header's first bytes: enough for e_machine. */
const ELF_HEAD = 64;

/** The first `max` bytes a tool writes to stdout (it is stopped there); undefined when it fails. */
function firstBytes(command: string, args: string[], max: number): Promise<Buffer | undefined> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "ignore"] });
    const parts: Buffer[] = [];
    let total = 0;
    child.stdout.on("data", (d: Buffer) => {
      if (total >= max) return;
      parts.push(d);
      total += d.length;
      if (total >= max) child.kill();
    });
    child.on("error", (e: NodeJS.ErrnoException) =>
      fail(e.code === "ENOENT" ? new Error(toolNotFound(command)) : e),
    );
    child.on("close", (code) => {
      const out = Buffer.concat(parts).subarray(0, max);
      done(code === 0 || total >= max ? out : undefined);
    });
  });
}

/**
 * /init's architecture and the app config of disk image `path` of `format`. Not an erofs
 * image's: that is extracted whole (seconds for a large one, which `run` does not spend), by
 * diskEntries only.
 */
export async function diskFacts(path: string, format: DiskFormat): Promise<InitramfsFacts> {
  if (format === "erofs")
    return {
      noArch: `${path}: erofs: erofs-utils 1.5 reads no single file out of an image (inspect extracts all of it)`,
    };
  // Absolute, so no image name is ever read as an option.
  const image = resolve(path);
  const reader = FILE_READERS[format];
  try {
    return await appFacts(path, (file, max) => firstBytes(...reader(image, file), max));
  } catch (err) {
    return { noArch: `${path}: ${(err as Error).message}` };
  }
}

async function appFacts(path: string, read: ReadImageFile): Promise<InitramfsFacts> {
  const init = await read(INIT_PATH, ELF_HEAD);
  const conf = await read(APP_CONFIG_PATH, MAX_APP_CONF + 1);
  const app = conf?.length && conf.length <= MAX_APP_CONF ? decodeAppConfig(conf.toString()) : undefined;
  const arch = init?.length ? elfArch(init) : undefined;
  const noArch = init?.length
    ? `${path}: /init is not an x86-64 or arm64 ELF executable`
    : `${path}: no /init on the disk`;
  return { ...(arch ? { arch } : { noArch }), ...(app ? { app } : {}) };
}

/**
 * Reads an extracted image's file only when it and every directory above it are what the
 * listing says (a regular file under directories): a symlink in the image never leads the
 * read onto the host's files.
 */
function extractedReader(dir: string, entries: readonly DiskEntry[]): ReadImageFile {
  const types = new Map(entries.map((e) => [e.path, e.mode & 0o170000]));
  return async (path, max) => {
    const parts = path.split("/");
    const parentsAreDirs = parts
      .slice(1)
      .every((_, i) => types.get(parts.slice(0, i + 1).join("/")) === 0o040000);
    if (!parentsAreDirs || types.get(path) !== 0o100000) return undefined;
    return readHead(join(dir, path), max);
  };
}

const FIND_TYPE: Record<string, number> = {
  f: 0o100000,
  d: 0o040000,
  l: 0o120000,
  c: 0o020000,
  b: 0o060000,
  p: 0o010000,
  s: 0o140000,
};

/**
 * erofs-utils 1.5 reads no single file out of an image, but fsck.erofs --extract writes all of
 * it: into a temp directory, under fakeroot (owners and device nodes are fakeroot's records,
 * never made on the host), and find lists it in the same session, NUL-separated, so no name
 * is ever quoted into a command. `fn` gets the directory and the listing.
 */
async function erofsExtracted<T>(
  image: string,
  fn: (dir: string, entries: DiskEntry[]) => Promise<T>,
): Promise<T> {
  // Named up front: under fakeroot's shell a missing tool would be "fakeroot failed (exit 127)".
  const missing = missingTools(["fakeroot", "fsck.erofs"])[0];
  if (missing) throw new Error(toolNotFound(missing));
  const work = await mkdtemp(join(tmpdir(), "slimroot-erofs-"));
  const dir = join(work, "root");
  try {
    const script =
      'fsck.erofs --extract="$1" --preserve "$2" >/dev/null && cd "$1" && find . -printf "%m %U %G %s %y %i %P\\0%l\\0"';
    const out = await toolWithInput(
      "fakeroot",
      ["--", "sh", "-c", script, "sh", dir, image],
      "",
      MAX_LISTING_BYTES,
    );
    const fields = out.split("\0");
    const entries: DiskEntry[] = [];
    for (let i = 0; i + 1 < fields.length; i += 2) {
      const m = /^([0-7]+) (\d+) (\d+) (\d+) ([fdlcbps]) (\d+) (.*)$/s.exec(fields[i]!);
      if (!m) throw new Error(`unexpected listing line ${JSON.stringify(fields[i])}`);
      const mode = FIND_TYPE[m[5]!]! | Number.parseInt(m[1]!, 8);
      entries.push({
        path: m[7] || ".",
        mode,
        uid: Number(m[2]),
        gid: Number(m[3]),
        // A directory's size here is the host's, not the image's.
        size: m[5] === "f" || m[5] === "l" ? Number(m[4]) : 0,
        ino: Number(m[6]),
        ...(m[5] === "l" ? { target: fields[i + 1]! } : {}),
      });
      if (entries.length > MAX_ENTRIES) throw new Error(`over ${MAX_ENTRIES} entries`);
    }
    if (!entries.length) throw new Error("fsck.erofs extracted nothing");
    // find lists in directory order; the other formats' tools list by name.
    entries.sort((x, y) =>
      x.path === "." ? -1 : y.path === "." ? 1 : Buffer.compare(Buffer.from(x.path), Buffer.from(y.path)),
    );
    return await fn(dir, entries);
  } finally {
    // An image's read-only directories would keep rm from emptying them.
    await new Promise((done) =>
      spawn("chmod", ["-R", "u+rwX", work], { stdio: "ignore" }).on("close", done).on("error", done),
    );
    await rm(work, { recursive: true, force: true });
  }
}

/** One file of a disk image as its tool lists it. */
export interface DiskEntry {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  ino: number;
  target?: string;
}

/** A listing is at most this much of a tool's output, and this many entries. */
const MAX_LISTING_BYTES = 64 << 20;
const MAX_ENTRIES = 1_000_000;

/** A disk's files, and `facts` when the listing read what diskFacts does not (erofs). */
export interface DiskListing {
  entries: DiskEntry[];
  facts?: InitramfsFacts;
}

/**
 * Every file of disk image `path`, through its format's tool (unsquashfs -lln; debugfs ls by
 * inode number, one run per directory level, so no name is ever quoted into a command; erofs
 * extracted whole, its app facts read on the way), or the one line saying why not.
 */
export async function diskEntries(path: string, format: DiskFormat): Promise<DiskListing | string> {
  const image = resolve(path);
  try {
    if (format === "squashfs") return { entries: await squashfsEntries(image, path) };
    if (format === "ext4") return { entries: await ext4Entries(image, path) };
    return await erofsExtracted(image, async (dir, entries) => ({
      entries,
      facts: await appFacts(path, extractedReader(dir, entries)),
    }));
  } catch (err) {
    return `${path}: no listing (${(err as Error).message})`;
  }
}

const TYPE_OF: Record<string, number> = {
  "-": 0o100000,
  d: 0o040000,
  l: 0o120000,
  c: 0o020000,
  b: 0o060000,
  p: 0o010000,
  s: 0o140000,
};

/** "drwsr-xr-t" -> its st_mode. */
function parseModeString(s: string): number {
  let mode = TYPE_OF[s[0]!] ?? 0;
  for (let i = 0; i < 9; i++)
    if (s[1 + i] !== "-" && s[1 + i] !== "S" && s[1 + i] !== "T") mode |= 1 << (8 - i);
  if (/[sS]/.test(s[3]!)) mode |= 0o4000;
  if (/[sS]/.test(s[6]!)) mode |= 0o2000;
  if (/[tT]/.test(s[9]!)) mode |= 0o1000;
  return mode;
}

const SQUASHFS_LINE =
  /^([-dlcbps][-rwxsStT]{9}) (\d+)\/(\d+) +(\d+|\d+, *\d+) \d{4}-\d\d-\d\d \d\d:\d\d squashfs-root(.*)$/;

async function squashfsEntries(image: string, path: string): Promise<DiskEntry[]> {
  const out = await firstBytes("unsquashfs", ["-lln", "-no-progress", image], MAX_LISTING_BYTES + 1);
  if (!out) throw new Error("unsquashfs failed");
  if (out.length > MAX_LISTING_BYTES) throw new Error(`over ${MAX_LISTING_BYTES} bytes of listing`);
  const entries: DiskEntry[] = [];
  for (const line of out.toString().split("\n")) {
    const m = SQUASHFS_LINE.exec(line);
    if (!m) continue;
    const mode = parseModeString(m[1]!);
    let name = m[5]!.replace(/^\//, "");
    let target: string | undefined;
    if ((mode & 0o170000) === 0o120000) [name, target] = name.split(" -> ", 2) as [string, string];
    entries.push({
      path: name || ".",
      mode,
      uid: Number(m[2]),
      gid: Number(m[3]),
      size: m[4]!.includes(",") ? 0 : Number(m[4]),
      ino: entries.length + 1,
      ...(target !== undefined ? { target } : {}),
    });
    if (entries.length > MAX_ENTRIES) throw new Error(`over ${MAX_ENTRIES} entries`);
  }
  if (!entries.length) throw new Error(`unsquashfs listed nothing of ${path}`);
  return entries;
}

async function ext4Entries(image: string, path: string): Promise<DiskEntry[]> {
  const entries: DiskEntry[] = [{ path: ".", mode: 0o040755, uid: 0, gid: 0, size: 0, ino: 2 }];
  let level = [{ ino: 2, path: "" }];
  const seen = new Set([2]);
  while (level.length) {
    const script = level.map((d) => `ls -p <${d.ino}>`).join("\n");
    const out = await toolWithInput("debugfs", ["-f", "-", image], script, MAX_LISTING_BYTES);
    const next: { ino: number; path: string }[] = [];
    let dir: { ino: number; path: string } | undefined;
    for (const line of out.split("\n")) {
      const cmd = /^debugfs: ls -p <(\d+)>$/.exec(line);
      if (cmd) {
        dir = level.find((d) => d.ino === Number(cmd[1]));
        continue;
      }
      const m = /^\/(\d+)\/([0-7]+)\/(\d+)\/(\d+)\/(.*)\/(\d*)\/$/.exec(line);
      if (!dir || !m || m[1] === "0" || !m[5] || m[5] === "..") continue;
      const ino = Number(m[1]);
      const mode = Number.parseInt(m[2]!, 8);
      if (m[5] === ".") {
        if (ino === 2) Object.assign(entries[0]!, { mode, uid: Number(m[3]), gid: Number(m[4]) });
        continue;
      }
      const child = dir.path ? `${dir.path}/${m[5]}` : m[5]!;
      entries.push({ path: child, mode, uid: Number(m[3]), gid: Number(m[4]), size: Number(m[6] || 0), ino });
      if (entries.length > MAX_ENTRIES) throw new Error(`over ${MAX_ENTRIES} entries`);
      if ((mode & 0o170000) === 0o040000 && !seen.has(ino)) {
        seen.add(ino);
        next.push({ ino, path: child });
      }
    }
    level = next;
  }
  if (entries.length === 1) throw new Error(`debugfs listed nothing of ${path}`);
  return entries;
}

/** A tool's stdout for `input` on its stdin, at most `max` bytes. */
function toolWithInput(command: string, args: string[], input: string, max: number): Promise<string> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { stdio: ["pipe", "pipe", "ignore"] });
    const parts: Buffer[] = [];
    let total = 0;
    child.stdout.on("data", (d: Buffer) => {
      total += d.length;
      if (total > max) child.kill();
      else parts.push(d);
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(`${input}\n`);
    child.on("error", (e: NodeJS.ErrnoException) =>
      fail(e.code === "ENOENT" ? new Error(toolNotFound(command)) : e),
    );
    child.on("close", (code) => {
      if (total > max) fail(new Error(`over ${max} bytes of listing`));
      else if (code !== 0) fail(new Error(`${command} failed (exit ${code})`));
      else done(Buffer.concat(parts).toString());
    });
  });
}
