/**
 * The kernel tree's own usr/gen_init_cpio, for checking slimroot's lists against it: the
 * one C file is taken from Debian's linux-source package (/usr/src/linux-source-*.tar.xz,
 * nothing else extracted) and compiled with gcc, cached under
 * ~/.cache/slimroot/test-tools/ by the tarball's name, size and mtime.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const toolsDir = join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "slimroot", "test-tools");

/** The compiled tool, or why it cannot be had here. */
export async function genInitCpio(): Promise<{ path: string } | { missing: string }> {
  const tarballs = (await readdir("/usr/src").catch(() => [] as string[]))
    .filter((f) => /^linux-source-[\d.]+\.tar\.xz$/.test(f))
    .sort();
  const tarball = tarballs.at(-1);
  if (!tarball) return { missing: "no /usr/src/linux-source-*.tar.xz (apt-get install linux-source-6.1)" };
  const st = await stat(join("/usr/src", tarball));
  const path = join(
    toolsDir,
    `gen_init_cpio-${tarball.replace(/\.tar\.xz$/, "")}-${st.size}-${Math.floor(st.mtimeMs)}`,
  );
  if (existsSync(path)) return { path };
  await mkdir(toolsDir, { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    const { stdout: source } = await run(
      "tar",
      ["-xJOf", join("/usr/src", tarball), "--wildcards", "*/usr/gen_init_cpio.c"],
      { maxBuffer: 1 << 20, timeout: 300_000 },
    );
    await writeFile(`${tmp}.c`, source);
    await run("gcc", ["-O2", "-o", tmp, `${tmp}.c`], { timeout: 120_000 });
    await rename(tmp, path);
    return { path };
  } finally {
    await rm(`${tmp}.c`, { force: true });
    await rm(tmp, { force: true });
  }
}
