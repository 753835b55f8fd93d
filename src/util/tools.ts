/**
 * The host tools slimroot runs, each with the Debian package that has it: the one table every
 * "not found" message and every up-front check uses. A command checks all the tools it will
 * need before it starts (requireTools), so a missing one is one line naming the tool and its
 * package, never a failure blamed on another tool (`fakeroot: mke2fs: not found`) after the
 * work is done.
 */
import { EnvironmentError } from "./errors.js";
import { hostExecutable } from "./host-path.js";

export const TOOL_PACKAGES: Readonly<Record<string, string>> = {
  xz: "xz-utils",
  zstd: "zstd",
  lz4: "lz4",
  bzip2: "bzip2",
  lzop: "lzop",
  gzip: "gzip",
  cpio: "cpio",
  fakeroot: "fakeroot",
  mke2fs: "e2fsprogs",
  "mkfs.ext4": "e2fsprogs",
  debugfs: "e2fsprogs",
  "mkfs.erofs": "erofs-utils",
  "fsck.erofs": "erofs-utils",
  mksquashfs: "squashfs-tools",
  unsquashfs: "squashfs-tools",
  setfattr: "attr",
  umoci: "umoci",
  skopeo: "skopeo",
  "qemu-system-x86_64": "qemu-system-x86",
  "qemu-system-aarch64": "qemu-system-arm",
  flock: "util-linux",
  // kernel build: the compilers (the cross ones are Debian's gcc-TRIPLET) and make; natively
  // build-essential, since kbuild's host programs need libc6-dev too.
  gcc: "build-essential",
  ld: "build-essential",
  "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
  "aarch64-linux-gnu-ld": "binutils-aarch64-linux-gnu",
  "x86_64-linux-gnu-gcc": "gcc-x86-64-linux-gnu",
  "x86_64-linux-gnu-ld": "binutils-x86-64-linux-gnu",
  make: "build-essential",
};

/** What kbuild needs besides the compiler and make (its tools and headers), for `kernel build`. */
export const KERNEL_BUILD_PACKAGES: readonly string[] = ["flex", "bison", "bc", "libelf-dev", "libssl-dev"];

/** Debian's package for `tool` (its own name when the table does not know it). */
export function toolPackage(tool: string): string {
  return isKnownTool(tool) ? TOOL_PACKAGES[tool]! : tool;
}

/** Whether the table has `name` (its own keys only: never "constructor" and the like). */
export function isKnownTool(name: string): boolean {
  return Object.hasOwn(TOOL_PACKAGES, name);
}

/** "TOOL not found on PATH (apt-get install PACKAGE)". */
export function toolNotFound(tool: string): string {
  return `${tool} not found on PATH (apt-get install ${toolPackage(tool)})`;
}

/** The tools of `tools` that are not on PATH, each once, in order. */
export function missingTools(tools: Iterable<string>, env: NodeJS.ProcessEnv = process.env): string[] {
  return [...new Set(tools)].filter((t) => !hostExecutable(t, env));
}

/**
 * Refuses to start `what` (e.g. "build --format ext4") when a tool it needs is not on PATH:
 * one line naming each missing tool and the packages to install, exit 2.
 */
export function requireTools(
  what: string,
  tools: Iterable<string>,
  env: NodeJS.ProcessEnv = process.env,
): void {
  const missing = missingTools(tools, env);
  if (!missing.length) return;
  const packages = [...new Set(missing.map(toolPackage))].join(" ");
  const names =
    missing.length === 1 ? missing[0] : `${missing.slice(0, -1).join(", ")} and ${missing.at(-1)}`;
  throw new EnvironmentError(`${what} needs ${names}, not found on PATH: apt-get install ${packages}`);
}
