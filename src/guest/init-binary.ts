import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Arch } from "../arch/arch.js";
import { EnvironmentError } from "../util/errors.js";

/** The image path of our init: the kernel runs /init from an initramfs. */
export const INIT_PATH = "init";

/** The repository (or installed package) root: this file lives in src/guest or dist/guest. */
export const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Path of our guest init for `arch`, built from init/ by `make`. */
export function initBinaryPath(arch: Arch): string {
  const path = process.env.SLIMROOT_INIT_DIR
    ? join(process.env.SLIMROOT_INIT_DIR, `init-${arch}`)
    : join(PACKAGE_ROOT, "init", "build", `init-${arch}`);
  if (!existsSync(path)) throw new EnvironmentError(`${path}: the guest init is not built (run make)`);
  return path;
}
