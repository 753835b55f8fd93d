/**
 * The kernel source a build compiles: Debian's linux-source package through apt (extracted
 * once into the cache), or a user's tree (--source, hashed by content).
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { cacheRoot } from "../util/cache-dir.js";
import { EnvironmentError, UserError } from "../util/errors.js";
import { trackTempPath, untrackTempPath } from "../util/temp-paths.js";
import { download, extract } from "./apt.js";
import { capture } from "./make.js";
import { fileSha256, treeHash } from "./tree-hash.js";

/** Debian's kernel source package. */
export const SOURCE_PACKAGE = "linux-source-6.1";

export interface Source {
  tree: string;
  /** For the manifest, e.g. `debian linux-source-6.1 6.1.192-3`. */
  label: string;
  /** What the tree holds, for the cache key: the .deb's sha256 or the tree's content hash. */
  content: string;
}

interface ExtractedSource {
  version: string;
  sha256: string;
}

/**
 * Debian's kernel source, extracted once into the cache (apt-get download, tar) and then used
 * as is: apt is asked only when no extracted tree is there, so neither an `apt-get update`
 * (a new candidate) nor missing package lists make a cached kernel unusable. Remove
 * <cache>/kernel-src to take Debian's newest.
 */
export async function debianSource(progress: (phase: string) => void): Promise<Source> {
  const parent = join(cacheRoot(), "kernel-src");
  const source = (tree: string, e: ExtractedSource): Source => ({
    tree,
    label: `debian ${SOURCE_PACKAGE} ${e.version}`,
    content: `deb sha256 ${e.sha256}`,
  });
  const found: { tree: string; e: ExtractedSource }[] = [];
  for (const f of await readdir(parent).catch(() => [] as string[])) {
    if (!f.startsWith(`${SOURCE_PACKAGE}_`) || !f.endsWith(".json")) continue;
    const tree = join(parent, f.slice(0, -".json".length));
    const e = JSON.parse(await readFile(join(parent, f), "utf8").catch(() => "{}")) as ExtractedSource;
    if (e.sha256 && e.version && existsSync(join(tree, "Makefile"))) found.push({ tree, e });
  }
  const newest = found.sort((a, b) => (a.tree < b.tree ? -1 : 1)).at(-1);
  if (newest) return source(newest.tree, newest.e);
  await mkdir(parent, { recursive: true });
  const work = await mkdtemp(join(parent, ".extract-"));
  trackTempPath(work);
  try {
    progress(`downloading ${SOURCE_PACKAGE}`);
    await download([SOURCE_PACKAGE], work);
    const deb = (await readdir(work)).find((f) => f.endsWith(".deb"));
    if (!deb) throw new EnvironmentError(`apt-get download ${SOURCE_PACKAGE}: no .deb`);
    // The name is the package's own: linux-source-6.1_6.1.192-3_all.deb.
    const version = decodeURIComponent(deb.split("_")[1] ?? "unknown");
    const sha256 = await fileSha256(join(work, deb));
    await extract(join(work, deb), join(work, "deb"));
    const tarball = join(work, "deb", "usr", "src", `${SOURCE_PACKAGE}.tar.xz`);
    if (!existsSync(tarball)) throw new EnvironmentError(`${deb}: no usr/src/${SOURCE_PACKAGE}.tar.xz in it`);
    progress(`extracting ${SOURCE_PACKAGE} ${version}`);
    await capture("tar", ["-xf", tarball, "-C", work]);
    const top = join(work, SOURCE_PACKAGE);
    if (!existsSync(join(top, "Makefile")))
      throw new EnvironmentError(`${tarball}: no ${SOURCE_PACKAGE}/Makefile`);
    const name = `${SOURCE_PACKAGE}_${version.replace(/[^\w.+-]/g, "_")}_${sha256.slice(0, 16)}`;
    const tree = join(parent, name);
    const e: ExtractedSource = { version, sha256 };
    await rename(top, tree).catch(async (err) => {
      if (!existsSync(join(tree, "Makefile"))) throw err; // else another build extracted it first
    });
    // Written last: a tree with its record is complete.
    await writeFile(join(work, "record.json"), `${JSON.stringify(e)}\n`);
    await rename(join(work, "record.json"), `${tree}.json`);
    return source(tree, e);
  } finally {
    await rm(work, { recursive: true, force: true });
    untrackTempPath(work);
  }
}

/** A user's kernel tree: must be a clean tree (out-of-tree builds refuse a configured one). */
export async function userSource(dir: string, progress: (phase: string) => void): Promise<Source> {
  const tree = resolve(dir);
  if (!existsSync(join(tree, "Makefile")) || !existsSync(join(tree, "Kconfig")))
    throw new UserError(`--source ${dir}: not a kernel source tree (no Makefile and Kconfig)`);
  if (existsSync(join(tree, ".config")))
    throw new UserError(`--source ${dir}: the tree is configured (.config); run make mrproper in it first`);
  const version = await capture("make", ["-s", "kernelversion"], tree);
  const [major, minor] = version.split(".").map(Number);
  if (!(major! > 5 || (major === 5 && minor! >= 10)))
    throw new UserError(`--source ${dir}: Linux ${version}; slimroot needs 5.10 or later`);
  return { tree, label: `${tree} ${version}`, content: `tree sha256 ${await treeHash(tree, progress)}` };
}
