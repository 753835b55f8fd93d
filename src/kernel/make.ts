/** Running kbuild: a clean environment, logged runs, the cross compiler and its versions. */
import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { ARCH, type Arch, hostArch } from "../arch/arch.js";
import { EnvironmentError } from "../util/errors.js";
import { KERNEL_BUILD_PACKAGES, toolNotFound, toolPackage } from "../util/tools.js";

/** Runs a command with its output appended to `log`; rejects naming the log on failure. */
export function runLogged(
  cmd: string,
  args: readonly string[],
  o: { cwd?: string; log: string; env?: NodeJS.ProcessEnv; onLine?: (line: string) => void },
): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const out = createWriteStream(o.log, { flags: "a" });
    out.write(`$ ${cmd} ${args.join(" ")}\n`);
    const child = spawn(cmd, args, {
      cwd: o.cwd,
      env: { ...buildEnv(), ...o.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let partial = "";
    const onData = (d: Buffer) => {
      out.write(d);
      if (!o.onLine) return;
      const lines = (partial + d.toString()).split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) o.onLine(l);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", (err: NodeJS.ErrnoException) => {
      out.end();
      reject(new EnvironmentError(err.code === "ENOENT" ? toolNotFound(cmd) : err.message));
    });
    child.on("close", (code, signal) => {
      out.end(() => {
        if (code === 0) resolvePromise();
        else
          reject(
            new EnvironmentError(
              `${cmd} ${args.slice(-1)[0]} failed (${signal ?? `exit ${code}`}); see the log: ${o.log}`,
            ),
          );
      });
    });
  });
}

/**
 * The environment kbuild runs in: only what finds the tools and a scratch directory. The
 * user's KCFLAGS, CC, LLVM, KBUILD_*, KCONFIG_*, ARCH... would change what is built without
 * changing the cache key.
 */
export function buildEnv(): NodeJS.ProcessEnv {
  const keep = ["PATH", "HOME", "TMPDIR"] as const;
  const env: NodeJS.ProcessEnv = { LC_ALL: "C" };
  for (const k of keep) if (process.env[k] !== undefined) env[k] = process.env[k];
  return env;
}

export function capture(cmd: string, args: readonly string[], cwd?: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd, env: buildEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d;
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d;
    });
    child.on("error", (e: NodeJS.ErrnoException) =>
      reject(new EnvironmentError(e.code === "ENOENT" ? `${cmd} not found` : e.message)),
    );
    child.on("close", (code) =>
      code === 0
        ? resolvePromise(out.trim())
        : reject(new EnvironmentError(`${cmd} ${args.join(" ")}: ${err.trim().split("\n").pop() ?? code}`)),
    );
  });
}

/** `CROSS_COMPILE=` for building `arch` here ("" when native). */
export function crossCompile(arch: Arch): string {
  return hostArch() === arch ? "" : `${ARCH[arch].gnuTriplet}-`;
}

/**
 * C flags slimroot adds to kbuild's (KCFLAGS), per architecture; part of the cache key.
 * amd64: at -Os (tinyconfig's choice) gcc writes every memset and memcpy it cannot do in a few
 * moves as `rep stosb` / `rep movsb`. Under TCG each byte of those is a turn of QEMU's loop,
 * and a byte written into a page that holds translated code takes QEMU's slow path: poisoning
 * the freed init code (free_initmem) alone took 150 of a floor boot's 560 ms. As calls they
 * run the kernel's memset and memcpy, which use the rep forms only on CPUs that do them fast.
 */
export const KERNEL_CFLAGS: Readonly<Record<Arch, string>> = {
  amd64: "-mstringop-strategy=libcall",
  arm64: "",
};

export function makeArgs(arch: Arch, obj: string): string[] {
  const cross = crossCompile(arch);
  return [
    `O=${obj}`,
    `ARCH=${ARCH[arch].kernelArch}`,
    ...(cross ? [`CROSS_COMPILE=${cross}`] : []),
    ...(KERNEL_CFLAGS[arch] ? [`KCFLAGS=${KERNEL_CFLAGS[arch]}`] : []),
  ];
}

/** The versions of the tools whose output ends up in the kernel: part of the cache key. */
export async function toolchain(arch: Arch): Promise<string> {
  const tools = [`${crossCompile(arch)}gcc`, `${crossCompile(arch)}ld`, "make"];
  try {
    const lines = await Promise.all(
      tools.map(async (t) => (await capture(t, ["--version"])).split("\n")[0]!),
    );
    return lines.join("; ");
  } catch {
    const packages = new Set([...tools.map(toolPackage), ...KERNEL_BUILD_PACKAGES]);
    throw new EnvironmentError(
      `${tools.join(", ")}: not all found: apt-get install ${[...packages].join(" ")}`,
    );
  }
}
