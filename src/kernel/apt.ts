/** The few apt/dpkg operations `kernel fetch` needs, run as the tools themselves. */
import { execFile } from "node:child_process";
import { readdir } from "node:fs/promises";
import { promisify } from "node:util";
import type { Arch } from "../arch/arch.js";
import { EnvironmentError } from "../util/errors.js";

const exec = promisify(execFile);

const LOCK_RE = /Could not get lock|Unable to acquire|lock-frontend|temporarily unavailable/i;

/** Runs a tool; waits out another apt's lock for up to a minute; failures name the command. */
async function tool(cmd: string, args: string[], cwd?: string): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    try {
      const { stdout } = await exec(cmd, args, { cwd, maxBuffer: 64 << 20 });
      return stdout;
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      if (e.code === "ENOENT")
        throw new EnvironmentError(`${cmd} not found: kernel fetch needs Debian's apt and dpkg`);
      const msg = (e.stderr ?? e.message).trim();
      if (attempt < 30 && LOCK_RE.test(msg)) {
        await new Promise((r) => setTimeout(r, 2000));
        continue;
      }
      throw new EnvironmentError(`${cmd} ${args.join(" ")}: ${msg.split("\n").filter(Boolean).pop() ?? msg}`);
    }
  }
}

export async function hostDebArch(): Promise<string> {
  return (await tool("dpkg", ["--print-architecture"])).trim();
}

/** `name`, or `name:arch` when arch is foreign to dpkg. */
export function qualified(name: string, arch: Arch, host: string): string {
  return arch === host ? name : `${name}:${arch}`;
}

/**
 * Makes `arch` installable: a foreign architecture must be known to dpkg and have package
 * lists. Adding one needs root; the error says what to run otherwise.
 */
export async function ensureArch(arch: Arch, host: string): Promise<void> {
  if (arch === host) return;
  const foreign = (await tool("dpkg", ["--print-foreign-architectures"])).split(/\s+/);
  if (!foreign.includes(arch)) {
    if (process.getuid?.() !== 0) {
      throw new EnvironmentError(
        `${arch} packages are not enabled: run as root: dpkg --add-architecture ${arch} && apt-get update`,
      );
    }
    await tool("dpkg", ["--add-architecture", arch]);
  } else {
    const lists = await readdir("/var/lib/apt/lists").catch(() => [] as string[]);
    if (lists.some((f) => f.includes(`binary-${arch}_Packages`))) return;
  }
  await update();
}

export async function update(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new EnvironmentError("apt's package lists are stale: run apt-get update as root");
  await tool("apt-get", ["update", "-qq"]);
}

/** A field of the candidate version of `pkg` (apt-cache show), or undefined. */
export async function candidateField(pkg: string, field: string): Promise<string | undefined> {
  const out = await tool("apt-cache", ["show", "--no-all-versions", pkg]);
  const m = new RegExp(`^${field}: (.*)$`, "m").exec(out);
  return m?.[1]?.trim();
}

/** apt-get download into `dir`, refreshing the package lists once if a file is gone (404). */
export async function download(pkgs: string[], dir: string): Promise<void> {
  try {
    await tool("apt-get", ["download", "-qq", ...pkgs], dir);
  } catch (err) {
    if (!/404|Unable to locate|Failed to fetch/i.test(String((err as Error).message))) throw err;
    await update();
    await tool("apt-get", ["download", "-qq", ...pkgs], dir);
  }
}

export async function extract(deb: string, dest: string): Promise<void> {
  await tool("dpkg", ["-x", deb, dest]);
}
