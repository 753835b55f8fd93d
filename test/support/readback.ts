/**
 * Reading a written image back with the format's own tools, into the one Snapshot shape the
 * hostile matrix compares (test/support/hostile-trees.ts): names as bytes, contents, modes,
 * owners, devices, symlink targets and xattrs.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
} from "../../src/cpio/newc.js";
import { readCpio } from "../../src/cpio/reader.js";
import { displayName, nameFromBytes } from "../../src/tree/path.js";
import type { Entry, Snapshot } from "./hostile-trees.js";

const run = promisify(execFile);

const TYPES: Record<number, Entry["type"]> = {
  [S_IFSOCK]: "socket",
  [S_IFLNK]: "symlink",
  [S_IFREG]: "file",
  [S_IFBLK]: "block",
  [S_IFDIR]: "dir",
  [S_IFCHR]: "char",
  [S_IFIFO]: "fifo",
};

/** A newc stream (the format's own decompressor's output, or gen_init_cpio's) as a snapshot. */
export async function cpioSnapshot(stream: AsyncIterable<Buffer> | Iterable<Buffer>): Promise<Snapshot> {
  const out: Snapshot = new Map();
  for await (const e of readCpio(stream)) {
    if (e.name === ".") continue;
    const type = TYPES[e.mode & S_IFMT];
    if (!type) throw new Error(`${displayName(e.name)}: unknown file type ${(e.mode & S_IFMT).toString(8)}`);
    const s: Entry = { type, mode: (e.mode & 0o7777).toString(8), owner: `${e.uid}:${e.gid}` };
    if (type === "file") s.sha256 = createHash("sha256").update(e.body).digest("hex");
    // gen_init_cpio stores a symlink's target with its NUL; the kernel reads up to it.
    if (type === "symlink")
      s.target = e.body.subarray(0, e.body.indexOf(0) < 0 ? undefined : e.body.indexOf(0)).toString("hex");
    if (type === "char" || type === "block") s.rdev = `${e.rdevMajor},${e.rdevMinor}`;
    out.set(e.name, s);
  }
  return out;
}

/** The whole stdout of `cmd args`; rejects with its stderr when it fails (before any of it is parsed). */
export async function commandOutput(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<Buffer> {
  try {
    const { stdout } = await run(cmd, args, {
      encoding: "buffer",
      maxBuffer: 1 << 30,
      ...(env ? { env } : {}),
    });
    return stdout;
  } catch (err) {
    const e = err as { code?: number; stderr?: Buffer };
    throw new Error(`${cmd} ${args.join(" ")}: exit ${e.code}: ${e.stderr?.toString().trim()}`);
  }
}

/**
 * A host directory as a snapshot, read by Python's os module: names and targets as bytes,
 * xattrs included (Node has no xattr calls), never following links.
 */
const WALK = `
import hashlib, json, os, stat, sys
root = os.fsencode(sys.argv[1])
out = []
for d, dirs, files in os.walk(root):
    for n in sorted(dirs + files):
        p = os.path.join(d, n)
        st = os.lstat(p)
        e = {"mode": format(stat.S_IMODE(st.st_mode), "o"), "owner": "%d:%d" % (st.st_uid, st.st_gid), "fmt": stat.S_IFMT(st.st_mode)}
        if stat.S_ISREG(st.st_mode):
            with open(p, "rb") as f: e["sha256"] = hashlib.sha256(f.read()).hexdigest()
        if stat.S_ISLNK(st.st_mode): e["target"] = os.readlink(p).hex()
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode): e["rdev"] = "%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
        x = {}
        for a in os.listxattr(p, follow_symlinks=False):
            try: x[os.fsencode(a).hex()] = os.getxattr(p, a, follow_symlinks=False).hex()
            except OSError as err: x[os.fsencode(a).hex()] = "getxattr failed: " + os.strerror(err.errno)
        if x: e["xattrs"] = x
        out.append([os.path.relpath(p, root).hex(), e])
json.dump(out, sys.stdout)
`;

export async function dirSnapshot(root: string): Promise<Snapshot> {
  const { stdout } = await run("/usr/bin/python3", ["-c", WALK, root], { maxBuffer: 1 << 28 }).catch(
    (err: { stderr?: string }) => {
      throw new Error(`walking ${root}: ${err.stderr?.trim().split("\n").pop()}`);
    },
  );
  const out: Snapshot = new Map();
  const fromHex = (h: string) => nameFromBytes(Buffer.from(h, "hex"));
  for (const [path, e] of JSON.parse(stdout) as [
    string,
    Entry & { fmt: number; xattrs?: Record<string, string> },
  ][]) {
    const { fmt, xattrs, ...rest } = e;
    const type = TYPES[fmt];
    if (!type) throw new Error(`${displayName(fromHex(path))}: unknown file type ${fmt.toString(8)}`);
    const s: Entry = { ...rest, type };
    if (xattrs) s.xattrs = Object.fromEntries(Object.entries(xattrs).map(([k, v]) => [fromHex(k), v]));
    out.set(fromHex(path), s);
  }
  return out;
}

/**
 * An ext4 or erofs image, checked by its fsck and read through the kernel's own driver (a
 * read-only loop mount without devices or setuid): debugfs's rdump drops device nodes and
 * xattrs, and erofs-utils 1.5's fsck --extract and dump.erofs show no xattrs.
 */
export async function mountedSnapshot(
  image: string,
  type: "ext4" | "erofs",
  scratch: string,
): Promise<Snapshot> {
  if (type === "ext4") await run("e2fsck", ["-fn", image]);
  else await run("fsck.erofs", [image]);
  const dir = await mkdtemp(join(scratch, `mnt-${type}-`));
  await run("mount", ["-o", "loop,ro,nodev,nosuid,noexec", "-t", type, image, dir]);
  try {
    return await dirSnapshot(dir);
  } finally {
    await run("umount", [dir]);
    await rm(dir, { recursive: true, force: true });
  }
}

/** A squashfs image extracted by unsquashfs (as root: owners, devices and xattrs kept). */
export async function squashfsSnapshot(image: string, scratch: string): Promise<Snapshot> {
  const parent = await mkdtemp(join(scratch, "unsquash-"));
  try {
    await run("unsquashfs", ["-no-progress", "-d", join(parent, "x"), image], { maxBuffer: 1 << 26 });
    return await dirSnapshot(join(parent, "x"));
  } finally {
    await rm(parent, { recursive: true, force: true });
  }
}

/** Scratch space under `root`, made on demand. */
export async function scratchDir(root: string, name: string): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Entries a writer adds that the source has not: slimroot's own files, a disk root's mount points. */
const ADDED = new Set(["init", "etc", "etc/slimroot", "etc/slimroot/app.conf"]);
const MOUNT_POINTS = new Set(["dev", "proc", "sys", "tmp", "run", "lost+found"]);

/** Differences between what a row expects and what was read back, as readable lines. */
export function diffSnapshots(want: Snapshot, got: Snapshot): string[] {
  const lines: string[] = [];
  for (const [p, w] of want) {
    const g = got.get(p);
    if (!g) {
      lines.push(`missing ${displayName(p)}`);
      continue;
    }
    for (const k of new Set([...Object.keys(w), ...Object.keys(g)]) as Set<keyof Entry>) {
      const a = JSON.stringify(w[k]);
      const b = JSON.stringify(g[k]);
      if (a !== b) lines.push(`${displayName(p)}: ${k} ${b ?? "(none)"}, want ${a ?? "(none)"}`);
    }
  }
  for (const [p, g] of got) {
    if (want.has(p)) continue;
    if (ADDED.has(p) && !want.has(p)) continue;
    if (MOUNT_POINTS.has(p) && g.type === "dir") continue;
    lines.push(`extra ${displayName(p)}`);
  }
  return lines;
}

/** A snapshot without xattrs, for a format that holds none. */
export function withoutXattrs(s: Snapshot): Snapshot {
  return new Map([...s].map(([p, { xattrs: _x, ...rest }]) => [p, rest]));
}
