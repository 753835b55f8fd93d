/**
 * The Firecracker launcher: writes vm.json (and the vmlinux extracted from a bzImage, the
 * initrd, an empty log file) into the run's directory and runs `firecracker --no-api
 * --config-file vm.json`. No API socket, so nothing can press Ctrl-Alt-Del: stopping the
 * VM ends Firecracker at once.
 */
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import type { Arch } from "../arch/arch.js";
import { detectCompression } from "../compress/compress.js";
import { readKernelConfig } from "../kernel/config.js";
import type { BootKernel } from "../kernel/resolve.js";
import { extractVmlinux } from "../kernel/vmlinux.js";
import type { OutputDir } from "../output/dir.js";
import { hostExecutable } from "../util/host-path.js";
import { inputStream, readHead, readInput } from "../util/input-file.js";
import { shellQuote } from "../util/shell.js";
import {
  checkFirecrackerKernel,
  defaultTapNetwork,
  firecrackerBootArgs,
  firecrackerConfig,
  parseFirecrackerVersion,
  versionAtLeast,
} from "./firecracker.js";
import { bootKernel, type Launcher, RunFailure, type VmRequest, writeInitrd } from "./launcher.js";
import type { GuestNetwork } from "./runconf.js";

export const FIRECRACKER = "firecracker";
export const CONFIG_FILE = "vm.json";
/** machine-config.vcpu_count's maximum in firecracker.yaml. */
const MAX_VCPUS = 32;

/** Modules for the devices a Firecracker VM has beyond virtio_mmio and virtio_net. */
function extraModules(req: VmRequest): string[] {
  const extra: string[] = [];
  if (req.disks?.length) extra.push("virtio_blk");
  if (req.vsockCid !== undefined) extra.push("vmw_vsock_virtio_transport");
  return extra;
}

/**
 * The kernel file Firecracker boots: on x86_64 an ELF vmlinux (a bzImage's is extracted
 * into `out`), on aarch64 an uncompressed `Image` (an Image.gz is inflated into `out`).
 */
async function bootableKernel(bk: BootKernel, out: OutputDir): Promise<string> {
  if (bk.kind.arch === "amd64") {
    if (bk.kind.format === "elf") return bk.kernel;
    const vmlinux = out.file("vmlinux");
    await extractVmlinux(await readInput(bk.kernel), bk.kernel, vmlinux, out.write);
    return vmlinux;
  }
  if (bk.kind.format === "elf")
    throw new RunFailure(`kernel ${bk.label}: Firecracker on aarch64 boots an Image, not an ELF vmlinux`);
  if (detectCompression(await readHead(bk.kernel, 8)) !== "gzip") return bk.kernel;
  const image = out.file("Image");
  await out.write([{ target: image, source: await inputStream(bk.kernel), transforms: [createGunzip()] }]);
  return image;
}

/** The tap's guest settings: --guest-ip/--gateway, else the tap's default. */
function tapNetwork(req: VmRequest): GuestNetwork | undefined {
  if (!req.tap) {
    if (req.guestIp || req.gateway) throw new RunFailure("--guest-ip and --gateway need --tap");
    return undefined;
  }
  const d = defaultTapNetwork(req.tap);
  if (!req.guestIp) return req.gateway ? { ...d, gateway: req.gateway } : d;
  return { ip: req.guestIp, ...(req.gateway ? { gateway: req.gateway } : {}) };
}

/** How the user reaches the guest, in one line. */
function reachLine(tap: string, net: GuestNetwork): string {
  const addr = net.ip.replace(/\/\d+$/, "");
  const host = net.gateway
    ? ` (host side, as root: ${shellQuote(["ip", "addr", "add", `${net.gateway}/${net.ip.split("/")[1] ?? "24"}`, "dev", tap])} && ${shellQuote(["ip", "link", "set", tap, "up"])})`
    : "";
  return `the guest is ${addr} on ${tap}${host}`;
}

function versionOf(binary: string): Promise<string> {
  return new Promise((resolve) => {
    execFile(binary, ["--version"], { timeout: 10_000 }, (_err, stdout, stderr) =>
      resolve(`${stdout}${stderr}`),
    );
  });
}

export const firecrackerLauncher: Launcher = {
  async prepare(req, arch: Arch, out, scratch) {
    const net = tapNetwork(req);
    if (req.forwards.length) {
      const where =
        net && req.tap ? reachLine(req.tap, net) : "give --tap NAME to put the guest on a tap device";
      throw new RunFailure(
        `-p: Firecracker has no port forwards; reach the guest on its tap instead: ${where}`,
      );
    }
    if (req.cpus > MAX_VCPUS)
      throw new RunFailure(`--cpus ${req.cpus}: Firecracker runs at most ${MAX_VCPUS} vCPUs`);
    const bk = await bootKernel(req, arch, "mmio", scratch, extraModules(req));
    const devices = {
      net: Boolean(req.tap),
      disks: Boolean(req.disks?.length),
      vsock: req.vsockCid !== undefined,
    };
    const verdict = checkFirecrackerKernel(
      bk.config ? await readKernelConfig(bk.config) : undefined,
      arch,
      bk.label,
      devices,
    );
    if (verdict.fatal) throw new RunFailure(verdict.fatal);
    const kernel = await bootableKernel(bk, out);
    const { initrd, memMiB, notes: memoryNotes } = await writeInitrd(req, bk, net ?? false, out, arch);
    const logPath = out.file("firecracker.log");
    // Firecracker opens the log for appending and does not create it.
    await out.write([{ target: logPath, source: Readable.from([]) }]);
    const config = firecrackerConfig({
      kernel,
      bootArgs: firecrackerBootArgs(arch),
      initrd,
      disks: req.disks ?? [],
      memMiB,
      cpus: req.cpus,
      ...(req.tap ? { tap: req.tap } : {}),
      ...(req.vsockCid !== undefined
        ? { vsock: { cid: req.vsockCid, udsPath: out.file("vsock.sock") } }
        : {}),
      logPath,
    });
    const configFile = out.file(CONFIG_FILE);
    await out.write([
      { target: configFile, source: Readable.from([`${JSON.stringify(config, null, 2)}\n`]) },
    ]);
    const notes = [...verdict.notes, ...memoryNotes];
    if (req.tap && net) notes.push(reachLine(req.tap, net));
    return {
      vmmName: "Firecracker",
      command: [FIRECRACKER, "--no-api", "--config-file", configFile],
      notes,
      async preflight() {
        const binary = hostExecutable(FIRECRACKER);
        const kvm = await access("/dev/kvm", constants.R_OK | constants.W_OK).then(
          () => undefined,
          (err: NodeJS.ErrnoException) => `/dev/kvm is not usable (${err.code})`,
        );
        const lacks = [binary ? undefined : `${FIRECRACKER} is not on PATH`, kvm].filter(Boolean);
        if (lacks.length)
          throw new RunFailure(
            `cannot run Firecracker here: ${lacks.join(" and ")}; --dry-run -o DIR writes its config and prints the command`,
          );
        if (verdict.minVersion) {
          const v = parseFirecrackerVersion(await versionOf(binary!));
          if (v && !versionAtLeast(v, verdict.minVersion))
            throw new RunFailure(
              `${binary} is Firecracker ${v.join(".")}: kernel ${bk.label} needs ${verdict.minVersion.join(".")} or later to see its devices`,
            );
        }
      },
      log: logPath,
      notFound: `${FIRECRACKER} not found: install a Firecracker release (github.com/firecracker-microvm/firecracker/releases)`,
    };
  },
};
