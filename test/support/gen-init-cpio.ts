/**
 * The kernel tree's own usr/gen_init_cpio, for checking slimroot's lists against it, compiled
 * with gcc from the one C file of Debian's linux-source-6.1 and cached under
 * <cache>/test-tools/. The file comes from, first found: a tree `slimroot kernel build`
 * extracted (<cache>/kernel-src/), the installed package (/usr/src/linux-source-*.tar.xz),
 * or the package fetched with apt-get download (nothing else of it is kept).
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { candidateField, download, extract } from "../../src/kernel/apt.js";
import { cacheRoot } from "../../src/util/cache-dir.js";

const run = promisify(execFile);
const PACKAGE = "linux-source-6.1";
const SOURCE = "usr/gen_init_cpio.c";

/** One gen_init_cpio.c from a tarball (only that member is written out). */
async function fromTarball(tarball: string): Promise<string> {
  const { stdout } = await run("tar", ["-xJOf", tarball, "--wildcards", `*/${SOURCE}`], {
    maxBuffer: 1 << 20,
    timeout: 600_000,
  });
  return stdout;
}

/** Where the C file is, as a cache key and a way to get its text. */
async function locate(): Promise<{ key: string; text: () => Promise<string> }> {
  const trees = join(cacheRoot(), "kernel-src");
  const extracted = (await readdir(trees).catch(() => [] as string[])).filter((d) => !d.startsWith("."));
  for (const dir of extracted.sort().reverse()) {
    const file = join(trees, dir, SOURCE);
    if (!existsSync(file)) continue;
    const text = await readFile(file, "utf8");
    return {
      key: `tree-${createHash("sha256").update(text).digest("hex").slice(0, 16)}`,
      text: async () => text,
    };
  }
  const installed = (await readdir("/usr/src").catch(() => [] as string[])).filter((f) =>
    /^linux-source-[\d.]+\.tar\.xz$/.test(f),
  );
  const tarball = installed.sort().at(-1);
  if (tarball) {
    const st = await stat(join("/usr/src", tarball));
    return {
      key: `${tarball}-${st.size}-${Math.floor(st.mtimeMs)}`,
      text: () => fromTarball(join("/usr/src", tarball)),
    };
  }
  const version = await candidateField(PACKAGE, "Version");
  if (!version) throw new Error(`apt-cache show ${PACKAGE}: no such package (apt-get update?)`);
  return {
    key: `deb-${version}`,
    text: async () => {
      const work = await mkdtemp(join(cacheRoot(), ".gen-init-cpio-"));
      try {
        await download([PACKAGE], work);
        const deb = (await readdir(work)).find((f) => f.endsWith(".deb"));
        if (!deb) throw new Error(`apt-get download ${PACKAGE}: no .deb`);
        await extract(join(work, deb), join(work, "deb"));
        return await fromTarball(join(work, "deb", "usr", "src", `${PACKAGE}.tar.xz`));
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    },
  };
}

/** The compiled tool's path. */
export async function genInitCpio(): Promise<string> {
  const { key, text } = await locate();
  const tools = join(cacheRoot(), "test-tools");
  const path = join(tools, `gen_init_cpio-${key.replace(/[^\w.+-]/g, "_")}`);
  if (existsSync(path)) return path;
  await mkdir(tools, { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(`${tmp}.c`, await text());
    await run("gcc", ["-O2", "-o", tmp, `${tmp}.c`], { timeout: 120_000 });
    await rename(tmp, path);
    return path;
  } finally {
    await rm(`${tmp}.c`, { force: true });
    await rm(tmp, { force: true });
  }
}
