/**
 * The kernel cache: an entry per build key (source content, fragments, arch, toolchain), a
 * symlink into .store/ swapped in one rename when a build is done, old directories pruned.
 */
import { createHash } from "node:crypto";
import { lstat, readdir, readFile, readlink, rename, rm, symlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Arch } from "../arch/arch.js";
import { cacheRoot } from "../util/cache-dir.js";

/** The cache directory name of a build. */
export function buildKey(parts: {
  source: string;
  fragments: readonly string[];
  arch: Arch;
  toolchain: string;
  /** make.ts KERNEL_CFLAGS: left out of the key when empty, so that adding it kept arm64's keys. */
  cflags?: string;
}) {
  const { cflags, ...rest } = parts;
  const keyed = cflags ? { ...rest, cflags } : rest;
  return createHash("sha256").update(JSON.stringify(keyed)).digest("hex").slice(0, 16);
}

/** Where entries' directories live; `kernels/slimroot-ARCH-KEY` is a symlink into it. */
export const STORE = ".store";
/** A replaced directory stays this long for the readers that resolved it (embed's copy). */
const RETIRED_KEEP_MS = 60 * 60_000;

/** Points the entry `dir` at `target` (in the store) in one rename; marks the old target retired. */
export async function publish(dir: string, target: string): Promise<void> {
  const old = await readlink(dir).catch(() => undefined);
  const link = `${dir}.${process.pid}.link`;
  await rm(link, { force: true });
  await symlink(join(STORE, basename(target)), link);
  // A plain directory from an older slimroot cannot be renamed over: set it aside first.
  if (
    await lstat(dir).then(
      (st) => st.isDirectory(),
      () => false,
    )
  )
    await rename(dir, join(dirname(target), `${basename(dir)}-old-${Date.now()}`));
  await rename(link, dir);
  if (old) await writeFile(join(dirname(dir), old, "RETIRED"), `${Date.now()}\n`).catch(() => {});
}

/** Removes retired store directories older than RETIRED_KEEP_MS and unlinked ones of dead builds. */
export async function pruneStore(parent: string): Promise<void> {
  const store = join(parent, STORE);
  const linked = new Set<string>();
  for (const e of await readdir(parent)) {
    const t = await readlink(join(parent, e)).catch(() => undefined);
    if (t) linked.add(basename(t));
  }
  for (const e of await readdir(store).catch(() => [] as string[])) {
    if (linked.has(e)) continue;
    const retired = Number(await readFile(join(store, e, "RETIRED"), "utf8").catch(() => "NaN"));
    const old = /-old-(\d+)$/.exec(e);
    const since = old ? Number(old[1]) : retired;
    if (Date.now() - since > RETIRED_KEEP_MS) await rm(join(store, e), { recursive: true, force: true });
  }
}

/** Where the log of a failed build is kept (the work directory goes). */
export function keptLog(arch: Arch): string {
  return join(cacheRoot(), "kernels", `last-failed-build-${arch}.log`);
}
