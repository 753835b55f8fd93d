/**
 * Real container-image fixtures built from Debian packages (see test/fixtures/build.sh),
 * cached under $SLIMROOT_FIXTURES (default test-fixtures under the cache root of src/util/cache-dir.ts, outside the
 * checkout, so CI runs on fresh clones reuse them).
 *
 * Each fixture lives in `<name>-<arch>-<hash>/`, where the hash covers the recipe
 * (suite, mirror, packages, timestamp) and the text of build.sh, so editing either
 * rebuilds and anything else reuses. Builds happen in a temp directory that is renamed
 * into place, and a lock file keeps concurrent test processes from building twice.
 * Fixtures are shared between tests: treat every returned path as read-only.
 *
 * Prebuild everything (e.g. to warm CI): node --import tsx test/support/fixtures.ts --build-all
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { cacheRoot } from "../../src/util/cache-dir.js";
import { withLock as lockFile, pidAlive } from "../../src/util/lock.js";

export type FixtureArch = "amd64" | "arm64";

export interface ImageFixture {
  /** Directory holding everything below. */
  dir: string;
  arch: FixtureArch;
  /** OCI image layout directory, image tagged "latest". */
  ociLayout: string;
  /** `oci:<ociLayout>:latest`, as skopeo and umoci spell it. */
  ociRef: string;
  /** `docker save`-style tarball (skopeo docker-archive), tagged `<name>:latest`. */
  dockerArchive: string;
  /** The whole root filesystem as one tarball (what the image flattens to). */
  rootfsTar: string;
  /** Reference flattening: `umoci raw unpack` of the OCI layout. */
  unpacked: string;
}

interface Recipe {
  name: "nginx" | "lighttpd" | "python" | "busybox";
  arch: FixtureArch;
  suite: string;
  mirror: string;
  packages: string[];
  sourceDateEpoch: number;
}

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const buildScript = path.join(repoRoot, "test/fixtures/build.sh");
export const MIRROR = "http://deb.debian.org/debian";
export const SUITE = "bookworm";
// Fixed so tarball mtimes and OCI "created" fields do not depend on when we built.
export const SOURCE_DATE_EPOCH = 1700000000;
// Bump to force a rebuild for reasons the hashed inputs do not capture.
const FORMAT_VERSION = 1;

export function fixturesRoot(): string {
  return path.resolve(process.env.SLIMROOT_FIXTURES || path.join(cacheRoot(), "test-fixtures"));
}

export function nginxFixture(): Promise<ImageFixture> {
  return ensure({
    name: "nginx",
    arch: "amd64",
    suite: SUITE,
    mirror: MIRROR,
    packages: ["nginx"],
    sourceDateEpoch: SOURCE_DATE_EPOCH,
  });
}

/** lighttpd with Debian's config (dlopen'd mod_dirlisting, perl include_shell scripts), port 80. */
export function lighttpdFixture(): Promise<ImageFixture> {
  return ensure({
    name: "lighttpd",
    arch: "amd64",
    suite: SUITE,
    mirror: MIRROR,
    packages: ["lighttpd"],
    sourceDateEpoch: SOURCE_DATE_EPOCH,
  });
}

/** `python3 -m http.server 8000` over /srv/www (one index.html). */
export function pythonFixture(): Promise<ImageFixture> {
  return ensure({
    name: "python",
    arch: "amd64",
    suite: SUITE,
    mirror: MIRROR,
    packages: ["python3"],
    sourceDateEpoch: SOURCE_DATE_EPOCH,
  });
}

export function busyboxFixture(arch: FixtureArch = "amd64"): Promise<ImageFixture> {
  return ensure({
    name: "busybox",
    arch,
    suite: SUITE,
    mirror: MIRROR,
    packages: ["busybox-static"],
    sourceDateEpoch: SOURCE_DATE_EPOCH,
  });
}

export interface MultiArchFixture {
  dir: string;
  /** OCI layout whose "latest" is an image index: linux/amd64 and linux/arm64/v8. */
  ociLayout: string;
  ociRef: string;
  /** The single-arch fixtures it is assembled from. */
  images: Record<FixtureArch, ImageFixture>;
}

const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const REF_NAME = "org.opencontainers.image.ref.name";

/** busybox for amd64 and arm64 behind one image index (umoci cannot make indexes). */
export async function busyboxMultiArchFixture(): Promise<MultiArchFixture> {
  const images = { amd64: await busyboxFixture("amd64"), arm64: await busyboxFixture("arm64") };
  const id = "busybox-multiarch";
  // Source dir names carry their own hashes; this file's text covers the assembly code.
  const key = hash(
    path.basename(images.amd64.dir),
    path.basename(images.arm64.dir),
    await readFile(fileURLToPath(import.meta.url)),
  );
  const dir = await once(id, () =>
    cachedDir(id, key, (tmp) => assembleIndex(images, path.join(tmp, "oci")), {
      name: id,
      from: [images.amd64.dir, images.arm64.dir],
    }),
  );
  const ociLayout = path.join(dir, "oci");
  return { dir, ociLayout, ociRef: `oci:${ociLayout}:latest`, images };
}

async function assembleIndex(images: Record<FixtureArch, ImageFixture>, layout: string): Promise<void> {
  const blobs = path.join(layout, "blobs/sha256");
  await mkdir(blobs, { recursive: true });
  const manifests: object[] = [];
  for (const arch of ["amd64", "arm64"] as const) {
    const src = images[arch].ociLayout;
    // Blobs are content-addressed, so copying both sets into one directory is safe.
    for (const blob of await readdir(path.join(src, "blobs/sha256"))) {
      await copyFile(path.join(src, "blobs/sha256", blob), path.join(blobs, blob));
    }
    const index = JSON.parse(await readFile(path.join(src, "index.json"), "utf8")) as {
      manifests: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }[];
    };
    const m = index.manifests.find((d) => d.annotations?.[REF_NAME] === "latest");
    if (!m) throw new Error(`${src}: no manifest tagged latest`);
    const platform =
      arch === "arm64"
        ? { architecture: arch, os: "linux", variant: "v8" }
        : { architecture: arch, os: "linux" };
    manifests.push({ mediaType: m.mediaType, digest: m.digest, size: m.size, platform });
  }
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests }));
  const digest = createHash("sha256").update(body).digest("hex");
  await writeFile(path.join(blobs, digest), body);
  await writeFile(path.join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const top = {
    mediaType: OCI_INDEX,
    digest: `sha256:${digest}`,
    size: body.length,
    annotations: { [REF_NAME]: "latest" },
  };
  await writeFile(
    path.join(layout, "index.json"),
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [top] }),
  );
}

/** Builds (or finds) every fixture; returns their directories. */
export async function buildAllFixtures(): Promise<string[]> {
  // Sequential: the builds are I/O and network bound and the machine has 2 cores.
  const dirs: string[] = [];
  dirs.push((await busyboxFixture("amd64")).dir);
  dirs.push((await busyboxFixture("arm64")).dir);
  dirs.push((await busyboxMultiArchFixture()).dir);
  dirs.push((await nginxFixture()).dir);
  dirs.push((await lighttpdFixture()).dir);
  dirs.push((await pythonFixture()).dir);
  return dirs;
}

// One promise per fixture per process, so parallel callers in one file share a build.
const inFlight = new Map<string, Promise<string>>();

function ensure(recipe: Recipe): Promise<ImageFixture> {
  const id = `${recipe.name}-${recipe.arch}`;
  return once(id, async () => {
    const key = hash(JSON.stringify({ recipe, FORMAT_VERSION }), await readFile(buildScript));
    return cachedDir(id, key, (tmp) => runBuildScript(recipe, tmp), recipe);
  }).then((dir) => fixtureAt(dir, recipe.arch));
}

export function once(id: string, make: () => Promise<string>): Promise<string> {
  let p = inFlight.get(id);
  if (!p) {
    p = make();
    // A failed build should be retried by the next caller, not remembered.
    p.catch(() => inFlight.delete(id));
    inFlight.set(id, p);
  }
  return p;
}

export function hash(...parts: (string | Buffer)[]): string {
  const h = createHash("sha256");
  for (const part of parts) h.update(part).update("\0");
  return h.digest("hex").slice(0, 16);
}

function fixtureAt(dir: string, arch: FixtureArch): ImageFixture {
  const ociLayout = path.join(dir, "oci");
  return {
    dir,
    arch,
    ociLayout,
    ociRef: `oci:${ociLayout}:latest`,
    dockerArchive: path.join(dir, "docker-archive.tar"),
    rootfsTar: path.join(dir, "rootfs.tar"),
    unpacked: path.join(dir, "unpacked"),
  };
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

function progress(msg: string): void {
  process.stderr.write(`[fixtures] ${msg}\n`);
}

/**
 * Returns `<root>/<id>-<key>`, first filling it with `fill` unless it already exists.
 * `fill` writes into a temp dir that is renamed into place only on success, so a
 * directory with the final name is always complete.
 */
export async function cachedDir(
  id: string,
  key: string,
  fill: (tmp: string) => Promise<void>,
  info: object,
): Promise<string> {
  const root = fixturesRoot();
  const final = path.join(root, `${id}-${key}`);
  if (await exists(final)) return final;

  await mkdir(root, { recursive: true });
  await withLock(`${final}.lock`, async () => {
    if (await exists(final)) return; // another process finished while we waited
    const tmp = path.join(root, `.tmp-${id}-${key}-${process.pid}`);
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp);
    progress(`building ${id} in ${tmp}`);
    const started = Date.now();
    try {
      await fill(tmp);
    } catch (err) {
      // The temp dir stays for a post-mortem; pruneStale removes it once our pid is gone.
      throw new Error(`fixture ${id} failed to build (see ${tmp}): ${(err as Error).message}`);
    }
    const buildSeconds = (Date.now() - started) / 1000;
    await writeFile(
      path.join(tmp, "fixture.json"),
      `${JSON.stringify({ ...info, buildSeconds }, null, 2)}\n`,
    );
    await rename(tmp, final);
    progress(`built ${id} in ${buildSeconds.toFixed(1)}s`);
    await pruneStale(root, id, final);
  });
  return final;
}

/** Runs build.sh into `outDir`, logging all output to `outDir/build.log`. */
function runBuildScript(recipe: Recipe, outDir: string): Promise<void> {
  return runFixtureScript(buildScript, [recipe.name, outDir], outDir, {
    FIXTURE_ARCH: recipe.arch,
    FIXTURE_SUITE: recipe.suite,
    FIXTURE_MIRROR: recipe.mirror,
    FIXTURE_PACKAGES: recipe.packages.join(" "),
    SOURCE_DATE_EPOCH: String(recipe.sourceDateEpoch),
  });
}

/** Runs a fixture script with `env` added, logging to `outDir/build.log`; a failure quotes the log's tail. */
export async function runFixtureScript(
  script: string,
  args: string[],
  outDir: string,
  env: Record<string, string>,
): Promise<void> {
  const logPath = path.join(outDir, "build.log");
  try {
    await spawnLogged(script, args, env, logPath);
  } catch (err) {
    const log = await readFile(logPath, "utf8").catch(() => "");
    const tail = log.split("\n").slice(-40).join("\n");
    throw new Error(`${(err as Error).message}\n--- ${logPath} (tail)\n${tail}`);
  }
}

function spawnLogged(
  script: string,
  args: string[],
  env: Record<string, string>,
  logPath: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const log = createWriteStream(logPath);
    const child = spawn("bash", [script, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env },
    });
    const verbose = process.env.SLIMROOT_FIXTURES_VERBOSE === "1";
    // Everything goes to the log; only the script's "==> " step lines reach stderr.
    let pending = "";
    const onData = (chunk: Buffer) => {
      log.write(chunk);
      pending += chunk.toString("utf8");
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        if (verbose) process.stderr.write(`${line}\n`);
        else if (line.startsWith("==> ")) progress(line.slice(4));
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", (err) => {
      log.end();
      reject(err);
    });
    child.on("close", (code, signal) => {
      log.end(() => {
        if (code === 0) resolve();
        else reject(new Error(`${path.basename(script)} exited with ${signal ?? code}`));
      });
    });
  });
}

/** Cross-process mutex (src/util/lock.ts), saying whom it waits for. */
function withLock(lockPath: string, fn: () => Promise<void>): Promise<void> {
  return lockFile(lockPath, fn, (owner) =>
    progress(`waiting for pid ${owner} to finish building ${path.basename(lockPath, ".lock")}`),
  );
}

/** Removes builds of the same fixture from older recipes, and temp dirs of dead builders. */
async function pruneStale(root: string, id: string, keep: string): Promise<void> {
  for (const entry of await readdir(root)) {
    const full = path.join(root, entry);
    if (full === keep || entry.endsWith(".lock")) continue;
    const tmp = /^\.tmp-.*-(\d+)$/.exec(entry);
    const stale = tmp ? !pidAlive(Number(tmp[1])) : entry.startsWith(`${id}-`);
    if (stale) await rm(full, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  if (!process.argv.includes("--build-all")) {
    process.stderr.write("usage: node --import tsx test/support/fixtures.ts --build-all\n");
    process.exit(2);
  }
  const started = Date.now();
  for (const dir of await buildAllFixtures()) process.stdout.write(`${dir}\n`);
  progress(`all fixtures ready in ${((Date.now() - started) / 1000).toFixed(1)}s`);
}
