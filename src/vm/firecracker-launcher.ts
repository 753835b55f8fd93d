/**
 * The Firecracker launcher: renders a boot plan as vm.json (and the vmlinux extracted from a
 * bzImage, the initrd, an empty log file) in the run's directory and runs `firecracker --no-api
 * --config-file vm.json`. No API socket, so nothing can press Ctrl-Alt-Del: stopping the
 * VM ends Firecracker at once.
 */
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { extractVmlinux } from "../artifact/vmlinux.js";
import type { OutputDir } from "../output/dir.js";
import { hostExecutable } from "../util/host-path.js";
import { inputStream, readInput } from "../util/input-file.js";
import { firecrackerConfig, parseFirecrackerVersion, versionAtLeast } from "./firecracker.js";
import { type Launcher, RunFailure, writeInitrd } from "./launcher.js";
import type { BootPlan } from "./plan.js";

export const FIRECRACKER = "firecracker";
export const CONFIG_FILE = "vm.json";

/**
 * The kernel file Firecracker boots: on x86_64 an ELF vmlinux (a bzImage's is extracted
 * into `out`), on aarch64 an uncompressed `Image` (an Image.gz is inflated into `out`).
 */
async function bootableKernel(k: BootPlan["kernel"], out: OutputDir): Promise<string> {
  if (k.convert === "vmlinux") {
    const vmlinux = out.file("vmlinux");
    await extractVmlinux(await readInput(k.path), k.path, vmlinux, out.write);
    return vmlinux;
  }
  if (k.convert === "gunzip") {
    const image = out.file("Image");
    await out.write([{ target: image, source: await inputStream(k.path), transforms: [createGunzip()] }]);
    return image;
  }
  return k.path;
}

function versionOf(binary: string): Promise<string> {
  return new Promise((resolve) => {
    execFile(binary, ["--version"], { timeout: 10_000 }, (_err, stdout, stderr) =>
      resolve(`${stdout}${stderr}`),
    );
  });
}

export const firecrackerLauncher: Launcher = {
  async render(plan, out) {
    const kernel = await bootableKernel(plan.kernel, out);
    const initrd = await writeInitrd(plan, out);
    const logPath = out.file("firecracker.log");
    // Firecracker opens the log for appending and does not create it.
    await out.write([{ target: logPath, source: Readable.from([]) }]);
    const config = firecrackerConfig({
      kernel,
      bootArgs: plan.cmdline,
      initrd,
      disks: plan.disks,
      memMiB: plan.memory.mib,
      cpus: plan.cpus,
      ...(plan.network.kind === "tap" ? { tap: plan.network.tap } : {}),
      ...(plan.vsockCid !== undefined
        ? { vsock: { cid: plan.vsockCid, udsPath: out.file("vsock.sock") } }
        : {}),
      logPath,
    });
    const configFile = out.file(CONFIG_FILE);
    await out.write([
      { target: configFile, source: Readable.from([`${JSON.stringify(config, null, 2)}\n`]) },
    ]);
    return {
      vmmName: "Firecracker",
      command: [FIRECRACKER, "--no-api", "--config-file", configFile],
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
        if (plan.minFirecracker) {
          const v = parseFirecrackerVersion(await versionOf(binary!));
          if (v && !versionAtLeast(v, plan.minFirecracker))
            throw new RunFailure(
              `${binary} is Firecracker ${v.join(".")}: kernel ${plan.kernel.label} needs ${plan.minFirecracker.join(".")} or later to see its devices`,
            );
        }
      },
      log: logPath,
      notFound: `${FIRECRACKER} not found: install a Firecracker release (github.com/firecracker-microvm/firecracker/releases)`,
    };
  },
};
