import { join } from "node:path";
import type { Arch } from "../arch/arch.js";
import { cacheRoot } from "../util/cache-dir.js";
import { UserError } from "../util/errors.js";
import { readInputText } from "../util/input-file.js";

/** What `slimroot kernel fetch` leaves in a kernel directory, as manifest.json. */
export interface KernelManifest {
  format: 1;
  arch: Arch;
  /** The kernel release (`uname -r`), e.g. 6.1.0-56-cloud-amd64. */
  version: string;
  /** Where it came from, e.g. the Debian package and version. */
  source: string;
  /** File names relative to the directory. */
  kernel: string;
  config?: string;
  /** Modules kept, in load order (dependencies first). */
  modules: ManifestModule[];
  /**
   * Newc archives of the modules a VM with each virtio transport needs at boot, to append
   * to an initrd (not all modules: each load costs boot time under emulation).
   */
  modulesCpio?: Partial<Record<Transport, string>>;
  /** amd64 from `kernel build`: the ELF kernel Firecracker boots, and `run` (bootFile). */
  vmlinux?: string;
  /** From `kernel build`: the object tree `--embed` relinks, its source tree, the build log. */
  build?: { dir: string; source: string; log: string };
}

/** How the VM's virtio devices are attached: microvm and virt use mmio, pc uses pci. */
export type Transport = "mmio" | "pci";

export interface ManifestModule {
  name: string;
  /** Relative to the directory: modules/NAME.ko, uncompressed. */
  file: string;
  depends: string[];
}

export const MANIFEST = "manifest.json";

/** What a manifest says of the kernel's identity (kernel/identity.ts); an older one may lack its source. */
export const manifestIdentity = (m: KernelManifest) => ({
  version: m.version,
  source: typeof m.source === "string" ? m.source : "",
});

/** The directory `slimroot kernel fetch --arch ARCH` fills. */
export function fetchedKernelDir(arch: Arch, env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheRoot(env), "kernels", `debian-cloud-${arch}`);
}

/** Reads and checks DIR/manifest.json. */
export async function readManifest(dir: string): Promise<KernelManifest> {
  const path = join(dir, MANIFEST);
  let text: string;
  try {
    text = await readInputText(path);
  } catch (err) {
    const why = (err as Error).message.replace(`${path}: `, "");
    throw new UserError(`${dir}: not a kernel directory (${MANIFEST}: ${why})`);
  }
  let m: KernelManifest;
  try {
    m = JSON.parse(text) as KernelManifest;
  } catch {
    throw new UserError(`${path}: not valid JSON`);
  }
  const ok =
    m &&
    m.format === 1 &&
    (m.arch === "amd64" || m.arch === "arm64") &&
    typeof m.kernel === "string" &&
    typeof m.version === "string" &&
    Array.isArray(m.modules) &&
    m.modules.every(
      (x) => typeof x?.name === "string" && typeof x.file === "string" && Array.isArray(x.depends),
    );
  if (!ok) throw new UserError(`${path}: not a slimroot kernel manifest (format 1)`);
  return m;
}

/**
 * The file a VM boots from a kernel directory: the uncompressed ELF vmlinux when there is one
 * (QEMU and Firecracker start it at its PVH entry, with nothing to decompress: under TCG the
 * bzImage's decompressor is emulated instruction by instruction), else the kernel image.
 */
export function bootFile(dir: string, m: KernelManifest): string {
  return join(dir, m.vmlinux ?? m.kernel);
}
