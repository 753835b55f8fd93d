/**
 * Facts about the two target architectures, in one leaf module every other module may import
 * (it imports only the error type).
 */
import { UserError } from "../util/errors.js";

export type Arch = "amd64" | "arm64";

export const ARCHES: readonly Arch[] = ["amd64", "arm64"];

export interface ArchFacts {
  /** ELF e_machine of its executables. */
  elfMachine: number;
  /** The kernel's and GNU's name (uname -m, ld-musl-ARCH, the kernel's ARCH is `kernelArch`). */
  uname: string;
  /** `ARCH=` for the kernel's Makefile. */
  kernelArch: string;
  /** GNU triplet prefix of the cross toolchain Debian ships. */
  gnuTriplet: string;
  /** Debian's dpkg architecture name (same as OCI's here). */
  debian: string;
  /** QEMU system emulator and the Debian package that has it. */
  qemuBinary: string;
  /** Node's process.arch for this architecture. */
  nodeArch: string;
}

export const ARCH: Readonly<Record<Arch, ArchFacts>> = {
  amd64: {
    elfMachine: 62, // EM_X86_64 (elf/elf.ts; elf.test.ts checks they agree)
    uname: "x86_64",
    kernelArch: "x86",
    gnuTriplet: "x86_64-linux-gnu",
    debian: "amd64",
    qemuBinary: "qemu-system-x86_64",
    nodeArch: "x64",
  },
  arm64: {
    elfMachine: 183, // EM_AARCH64
    uname: "aarch64",
    kernelArch: "arm64",
    gnuTriplet: "aarch64-linux-gnu",
    debian: "arm64",
    qemuBinary: "qemu-system-aarch64",
    nodeArch: "arm64",
  },
};

export function archOf(architecture: string): Arch {
  if (architecture === "amd64" || architecture === "arm64") return architecture;
  throw new UserError(`architecture ${architecture}: slimroot builds for amd64 and arm64 only`);
}

/** The architecture slimroot targets for an ELF e_machine, if any. */
export function archOfElfMachine(machine: number): Arch | undefined {
  return ARCHES.find((a) => ARCH[a].elfMachine === machine);
}

/** This machine's architecture, if slimroot targets it. */
export function hostArch(): Arch | undefined {
  return ARCHES.find((a) => ARCH[a].nodeArch === process.arch);
}
