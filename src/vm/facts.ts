/**
 * What `run` reads before it plans a boot (plan.ts): the image (an initramfs, a disk, or a
 * kernel with its app built in), the volumes, the host's QEMU choices and the kernel with its
 * modules archive. All of run's reading of its inputs happens here; the plan is pure.
 */
import { stat } from "node:fs/promises";
import { type Arch, hostArch } from "../arch/arch.js";
import { type EmbeddedApp, embeddedApp } from "../artifact/embedded.js";
import { artifactArch, describe, identify, kernelKindOf } from "../artifact/identify.js";
import type { KernelKind } from "../artifact/kernel.js";
import type { CpioEntry } from "../cpio/reader.js";
import { readKernelConfig } from "../kernel/config.js";
import { kernelDirArch, resolveKernel } from "../kernel/resolve.js";
import { matchingWhyHeader } from "../output/why.js";
import { UserError } from "../util/errors.js";
import { initCpio, type VolumeSpec, volumeFacts } from "./disks.js";
import { archivesFootprint, entriesFootprint, readKernelRule } from "./memory.js";
import {
  type BootFacts,
  type BootOptions,
  type Files,
  type HostFacts,
  type ImageFacts,
  type KernelFacts,
  kernelNeeds,
} from "./plan.js";
import { chooseAccel, chooseMachine, hostTscKhz } from "./qemu.js";

/** The tmpfs footprint of one archive (memory.ts): a file, or the entries read from a kernel. */
async function filesOf(archive: string | readonly CpioEntry[]): Promise<Files> {
  const { initrdBytes: _, ...files } =
    typeof archive === "string"
      ? await archivesFootprint([archive], 0)
      : await entriesFootprint([archive], 0);
  return files;
}

/**
 * An initramfs's footprint as its build recorded it in IMAGE.why, when that .why was written
 * with this very image (its sha256, some ms for a small image); else read from the archive,
 * which means decompressing all of it (70 ms for a 4 MB nginx image on the development machine).
 */
async function initramfsFiles(image: string): Promise<Files> {
  const recorded = (await matchingWhyHeader(image))?.footprint;
  return recorded ?? (await filesOf(image));
}

const sizeOf = async (path: string) => (await stat(path)).size;

/** What the kernel file is (artifact/identify): its format and architecture. */
async function kernelKind(path: string): Promise<KernelKind> {
  const a = await identify(path, { embedded: false });
  if (a.kind !== "kernel")
    throw new UserError(
      `${path}: not a kernel image but ${describe(a)} (no bzImage header, x86-64/arm64 ELF or arm64 Image magic)`,
    );
  return kernelKindOf(a);
}

/** The architecture of `--kernel` (a fetched directory's manifest, or the kernel file's bytes). */
async function kernelArch(path: string): Promise<Arch> {
  return (await kernelDirArch(path)) ?? (await kernelKind(path)).arch;
}

/**
 * What RAM an embedded app takes until the kernel has unpacked it: an uncompressed built-in
 * archive (in place in an ELF or Image; a bzImage holds it after decompressing itself, beside
 * its compressed file), else the compressed file, which bounds the compressed archive.
 */
function heldBytes(fileBytes: number, kind: KernelKind, app: EmbeddedApp): number {
  if (app.heldBytes === 0) return fileBytes;
  return kind.format === "bzImage" ? fileBytes + app.heldBytes : app.heldBytes;
}

/**
 * The image and the guest architecture. `kernel`: the --kernel given. A disk boots the
 * architecture of the kernel given, else of its /init, else of the host.
 */
export async function imageFacts(
  image: string,
  kernel: string | undefined,
  scratch: string,
): Promise<{ arch: Arch; image: ImageFacts }> {
  // What the file is, asked once (artifact/identify); a kernel's app is extracted below.
  const a = await identify(image, { embedded: false });
  switch (a.kind) {
    case "list":
      throw new UserError(`${image}: ${describe(a)} is for kernel build --embed; run an initramfs or a disk`);
    case "snapshot": // run.ts resumes a snapshot (resume.ts) before it reads boot facts
      throw new UserError(`${image}: ${describe(a)}: resumed by slimroot run, not booted`);
    case "kernel": {
      // A kernel file as the image carries its app (kernel build --embed).
      const kind = kernelKindOf(a);
      const app = await embeddedApp(image, kind, scratch);
      const files = await filesOf(app.entries);
      const rule = await readKernelRule(image, kind, { embedded: true });
      return {
        arch: a.arch,
        image: {
          kind: "embedded",
          path: image,
          kernel: kind,
          bytes: heldBytes(a.bytes, kind, app),
          files,
          rule,
        },
      };
    }
    case "disk": {
      const arch = kernel ? await kernelArch(kernel) : (a.arch ?? hostArch() ?? "amd64");
      const initBytes = (await initCpio(arch)).length;
      return { arch, image: { kind: "disk", path: image, identity: a.identity, initBytes } };
    }
    case "initramfs": {
      const arch = artifactArch(a);
      const files = await initramfsFiles(image);
      return {
        arch,
        image: { kind: "initramfs", path: image, arch, bytes: a.bytes, lz4: a.compression === "lz4", files },
      };
    }
  }
}

/** QEMU's accelerator and machine for this host (environment overrides included). */
export function hostFacts(arch: Arch): HostFacts {
  const accel = chooseAccel(arch);
  const tscKhz = arch === "amd64" && accel === "tcg" ? hostTscKhz() : undefined;
  return { accel, machine: chooseMachine(arch, accel, tscKhz), ...(tscKhz ? { tscKhz } : {}) };
}

/** The kernel for the boot, with the modules its devices and disks need. */
async function kernelFacts(
  f: Omit<BootFacts, "kernel">,
  o: BootOptions,
  scratch: string,
): Promise<KernelFacts> {
  const needs = kernelNeeds(f, o);
  const bk = await resolveKernel({
    kernel: o.kernel,
    modules: o.modules,
    arch: f.arch,
    transport: needs.transport,
    scratch,
    ...(needs.modules.length ? { extraModules: needs.modules } : {}),
  });
  const kind = await kernelKind(bk.kernel);
  // Read and parsed once: the plan's checks and the memory rule both take it.
  const config = bk.config ? await readKernelConfig(bk.config) : undefined;
  const modules = bk.modulesCpio
    ? { path: bk.modulesCpio, bytes: await sizeOf(bk.modulesCpio), files: await filesOf(bk.modulesCpio) }
    : undefined;
  const rule = await readKernelRule(bk.kernel, kind, {
    ...(bk.manifest ? { manifest: bk.manifest } : {}),
    ...(config ? { config } : {}),
  });
  return {
    path: bk.kernel,
    kind,
    rule,
    label: bk.label,
    ...(config !== undefined ? { config } : {}),
    gzip: kind.gzip === true,
    ...(modules ? { modules } : {}),
  };
}

/** Everything a boot plan is made from; `scratch` takes an extracted or built archive. */
export async function bootFacts(
  image: string,
  volumes: readonly VolumeSpec[],
  o: BootOptions,
  scratch: string,
): Promise<BootFacts> {
  const { arch, image: img } = await imageFacts(image, o.kernel, scratch);
  const partial = {
    arch,
    image: img,
    volumes: await volumeFacts(volumes),
    ...(o.vmm === "qemu" ? { host: hostFacts(arch) } : {}),
  };
  // An embedded kernel is the image: nothing to resolve (the plan refuses --kernel for it).
  if (img.kind === "embedded") return partial;
  return { ...partial, kernel: await kernelFacts(partial, o, scratch) };
}
