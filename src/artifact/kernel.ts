import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { Arch } from "../arch/arch.js";

export type KernelFormat = "bzImage" | "elf" | "arm64-image";

export interface KernelKind {
  arch: Arch;
  format: KernelFormat;
  /** An arm64 Image.gz: QEMU boots it as is, Firecracker and the banner scan inflate it. */
  gzip?: true;
}

/** Debian's layout: /boot/vmlinuz-RELEASE has /boot/config-RELEASE beside it. */
export function configBeside(kernelFile: string): string | undefined {
  const m = /^(?:vmlinuz|vmlinux|bzImage|Image)-(.+)$/.exec(basename(kernelFile));
  if (!m) return undefined;
  const path = join(dirname(kernelFile), `config-${m[1]}`);
  return existsSync(path) ? path : undefined;
}
