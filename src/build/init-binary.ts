import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { EnvironmentError, UserError } from "../util/errors.js";

/** The repository (or installed package) root: this file lives in src/build or dist/build. */
export const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export type Arch = "amd64" | "arm64";

export function archOf(architecture: string): Arch {
  if (architecture === "amd64" || architecture === "arm64") return architecture;
  throw new UserError(`architecture ${architecture}: slimroot builds for amd64 and arm64 only`);
}

/** Path of our guest init for `arch`, built from init/ by `make`. */
export function initBinaryPath(arch: Arch): string {
  const path = process.env.SLIMROOT_INIT_DIR
    ? join(process.env.SLIMROOT_INIT_DIR, `init-${arch}`)
    : join(PACKAGE_ROOT, "init", "build", `init-${arch}`);
  if (!existsSync(path)) throw new EnvironmentError(`${path}: the guest init is not built (run make)`);
  return path;
}
