/**
 * A launcher turns a `slimroot run` request into a VMM process: QEMU (qemu-launcher.ts) or
 * Firecracker (firecracker-launcher.ts). run.ts does what is the same for both: it finds the
 * image's architecture, asks the launcher to prepare its files, then starts the command,
 * watches the console for the init's exit report and stops the VM.
 */
import type { Arch } from "../arch/arch.js";
import { detectCompression } from "../compress/compress.js";
import type { Transport } from "../kernel/manifest.js";
import { type BootKernel, resolveKernel } from "../kernel/resolve.js";
import { GUEST_MODULES_DIR } from "../kmod/modules-cpio.js";
import type { OutputDir } from "../output/dir.js";
import { readHead } from "../util/input-file.js";
import { checkKernelFor, type Disk, type DiskBoot, initCpio } from "./disks.js";
import { RunFailure } from "./failure.js";
import { joinInitrd } from "./initrd.js";
import { archivesFootprint, chooseMemoryMiB, memoryWarning, readKernelRule } from "./memory.js";
import type { PortForward } from "./ports.js";
import { type GuestNetwork, runConfCpio, runConfText } from "./runconf.js";

export type Vmm = "qemu" | "firecracker";
export const VMMS: readonly Vmm[] = ["qemu", "firecracker"];

export type { Disk, DiskBoot } from "./disks.js";
export { RunFailure } from "./failure.js";

/** What the VM is: the part of a run request a launcher reads. */
export interface VmRequest {
  image: string;
  kernel?: string;
  modules?: string;
  forwards: readonly PortForward[];
  /** Guest memory; default: sized from the image (memory.ts). Too little for the image is an error. */
  memMiB?: number;
  cpus: number;
  /** NAME=VALUE for run.conf. */
  env: readonly string[];
  /** Replaces the image's whole argv (run.conf `arg` lines replace app.conf's). */
  args?: readonly string[];
  /** Record mode (slimroot trace): the init prints SLIMROOT_TRACE lines before its exit report. */
  trace?: boolean;
  /** Firecracker: the host tap device for eth0. */
  tap?: string;
  /** Firecracker: eth0's address (A.B.C.D/N) and the gateway; defaults per tap. */
  guestIp?: string;
  gateway?: string;
  /** Firecracker: a vsock device with this guest CID. */
  vsockCid?: number;
  disks?: readonly Disk[];
  diskBoot?: DiskBoot;
  /** This boot's report key (report.ts), for the init in the run.conf archive. */
  reportKey?: string;
}

/** A prepared VM: its files are written, the command is ready to start. */
export interface Launch {
  /** For messages: "QEMU", "Firecracker". */
  vmmName: string;
  /** [binary, ...arguments]. */
  command: string[];
  /** What the user should know before it boots (how to reach the guest, kernel caveats). */
  notes: string[];
  /** Checks the host can run it now (ports free, KVM, the binary): throws RunFailure. */
  preflight(): Promise<void>;
  /**
   * Asks the guest to stop its app gracefully; run.ts kills the VMM once the grace period
   * is over. Absent when the VMM has no way to tell the guest: the VMM is killed at once.
   */
  requestStop?: (deadline: number, exited: () => boolean) => Promise<void>;
  /** The one line for a VMM binary that is not installed. */
  notFound: string;
  /** A file the VMM logs its errors to (instead of stderr): its last line explains a failure. */
  log?: string;
}

export interface Launcher {
  /**
   * Writes the VM's files into `out` (renamed into place together once it returns) and
   * builds the command; `scratch` is for intermediate files (a modules archive), removed
   * after the run or the dry run.
   */
  prepare(req: VmRequest, arch: Arch, out: OutputDir, scratch: string): Promise<Launch>;
}

/** The kernel for the image, its architecture checked against the image's. */
export async function bootKernel(
  req: VmRequest,
  arch: Arch,
  transport: Transport,
  scratch: string,
  extraModules: readonly string[] = [],
): Promise<BootKernel> {
  const extra = [...extraModules, ...(req.diskBoot?.modules ?? [])].filter(
    (m, i, all) => all.indexOf(m) === i,
  );
  const bk = await resolveKernel({
    kernel: req.kernel,
    modules: req.modules,
    arch,
    transport,
    scratch,
    ...(extra.length ? { extraModules: extra } : {}),
  });
  if (bk.kind.arch !== arch) {
    throw new RunFailure(`kernel ${bk.label} is ${bk.kind.arch}, but the image ${req.image} is ${arch}`);
  }
  await checkKernelFor(req.disks ?? [], bk.config, bk.label);
  return bk;
}

/** `parts` joined into `dir`/initrd through a temp name, so a `--dry-run -o DIR` never holds half an initrd. */
export async function placeInitrd(
  parts: readonly (string | Buffer)[],
  out: OutputDir,
): Promise<{ initrd: string; bytes: number }> {
  const initrd = out.file("initrd");
  const [bytes] = await out.write([{ target: initrd, mode: 0o600, write: (tmp) => joinInitrd(parts, tmp) }]);
  return { initrd, bytes: bytes! };
}

/**
 * The initrd every launcher boots: the image (when it is an initramfs), the kernel's modules
 * archive and run.conf (with the report key), joined into `out`/initrd, so a `--dry-run -o DIR`
 * never holds half an initrd. With it, the guest memory: --mem, refused when the initrd cannot
 * unpack in it, or sized from the initrd (it lives in guest RAM; memory.ts) for this kernel,
 * with a warning among `notes` when the kernel's memory use was never measured.
 */
export async function writeInitrd(
  req: VmRequest,
  bk: BootKernel,
  network: boolean | GuestNetwork,
  out: OutputDir,
  arch: Arch,
): Promise<{ initrd: string; memMiB: number; notes: string[] }> {
  const conf = runConfText({
    network,
    env: req.env,
    ...(req.args ? { args: req.args } : {}),
    ...(req.trace ? { trace: true } : {}),
    ...(bk.modulesCpio ? { modulesDir: `/${GUEST_MODULES_DIR}` } : {}),
    disks: req.diskBoot?.records ?? [],
  });
  // A disk root's initramfs holds only our init (the image's own is on the disk).
  const first = req.diskBoot?.rootIsDisk ? await initCpio(bk.kind.arch) : req.image;
  const modules = bk.modulesCpio ? [bk.modulesCpio] : [];
  const runConf = await runConfCpio(conf, req.reportKey);
  // The kernel's legacy-lz4 decoder has no end mark: it reads on into the next archive and
  // fails there, losing it (run.conf and its report key). An lz4 image therefore goes last.
  const lz4 = typeof first === "string" && detectCompression(await readHead(first, 8)) === "lz4";
  const { initrd, bytes } = await placeInitrd(
    lz4 ? [...modules, runConf, first] : [first, ...modules, runConf],
    out,
  );
  // What unpacks into RAM: the image, unless it is a disk (then our init, a few KiB: the headroom covers it).
  const inRam = [...(typeof first === "string" ? [first] : []), ...modules];
  const rule = await readKernelRule(bk.kernel, bk.kind, {
    ...(bk.manifest ? { manifest: bk.manifest } : {}),
    ...(bk.config ? { configFile: bk.config } : {}),
  });
  const memMiB = chooseMemoryMiB(await archivesFootprint(inRam, bytes), arch, req.memMiB, req.image, rule);
  const warning = memoryWarning(rule, bk.label, memMiB, req.memMiB);
  return { initrd, memMiB, notes: warning ? [warning] : [] };
}
