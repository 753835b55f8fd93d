/**
 * The content hash of a kernel source tree (`kernel build --source DIR`), the cache key of what
 * it builds: every file's path, kind, executable bit and bytes (a symlink's target), `.git`
 * left out. Hashing 1.5 GB takes about a minute here, so each file's hash is remembered
 * with its inode, size, mtime and ctime (as git's index does): a later call reads only the
 * files whose stat changed. ctime cannot be set back by a user, so a patched file is always
 * read again.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, mkdir, readdir, readFile, readlink, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { cacheRoot } from "../util/cache-dir.js";

type Entry = [ino: number, size: number, mtimeNs: string, ctimeNs: string, sha: string];

export function fileSha256(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    createReadStream(path)
      .on("data", (d) => h.update(d))
      .on("error", reject)
      .on("end", () => resolve(h.digest("hex")));
  });
}

/** Every path under `root` (relative, sorted by bytes), iteratively; `.git` skipped. */
async function walk(root: string): Promise<string[]> {
  const out: string[] = [];
  const stack = [""];
  while (stack.length) {
    const rel = stack.pop()!;
    for (const e of await readdir(join(root, rel), { withFileTypes: true })) {
      if (rel === "" && e.name === ".git") continue;
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) stack.push(p);
      else out.push(p);
    }
  }
  return out.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

export async function treeHash(root: string, progress: (phase: string) => void = () => {}): Promise<string> {
  const indexDir = join(cacheRoot(), "kernel-src", ".index");
  const indexFile = join(indexDir, `${createHash("sha256").update(root).digest("hex").slice(0, 16)}.json`);
  const old = new Map<string, Entry>(
    Object.entries(JSON.parse(await readFile(indexFile, "utf8").catch(() => "{}")) as Record<string, Entry>),
  );
  const index: Record<string, Entry> = {};
  const total = createHash("sha256");
  let read = 0;
  for (const rel of await walk(root)) {
    const path = join(root, rel);
    const st = await lstat(path, { bigint: true });
    let kind: string;
    let sha: string;
    if (st.isSymbolicLink()) {
      kind = "l";
      sha = createHash("sha256")
        .update(await readlink(path))
        .digest("hex");
    } else if (st.isFile()) {
      kind = st.mode & 0o111n ? "x" : "f";
      const e: Entry = [Number(st.ino), Number(st.size), String(st.mtimeNs), String(st.ctimeNs), ""];
      const was = old.get(rel);
      if (was && was.slice(0, 4).join() === e.slice(0, 4).join()) sha = was[4];
      else {
        if (read++ === 0) progress("hashing the source tree");
        sha = await fileSha256(path);
      }
      e[4] = sha;
      index[rel] = e;
    } else continue; // a socket or FIFO in a source tree is no source
    total.update(`${kind} ${rel}\0${sha}\n`);
  }
  await mkdir(indexDir, { recursive: true });
  const tmp = `${indexFile}.${process.pid}`;
  await writeFile(tmp, JSON.stringify(index));
  await rename(tmp, indexFile);
  return total.digest("hex");
}
