/**
 * Firecracker needs a working KVM, which the machines this project is tested on do not have
 * (their KVM is a paravirtual flavour guests hang under). To still boot what `slimroot run
 * --vmm firecracker` writes, tests put this stand-in on PATH as `firecracker`: it reads the
 * same `--config-file`, checks it against Firecracker's schema when that is available, and
 * boots the same kernel file (the extracted ELF vmlinux, through PVH), initrd, command line,
 * memory, vCPUs and drives with slimroot's own QEMU command (microvm with ACPI under TCG,
 * whose virtio-mmio devices are described in the DSDT as Firecracker >= 1.8 describes its
 * own; its RNG and keyboard come along unused) and the network interfaces on the same
 * host tap devices with the same MACs. What it cannot show: Firecracker's own device model
 * and vsock.
 *
 * `firecrackerStandin(dir)` writes the `firecracker` script; the script runs this file,
 * which prints QEMU's argv one per line for the script to exec (so the process slimroot
 * starts and kills is QEMU itself, with nothing left behind).
 */
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { hostTscKhz, kernelCmdline, qemuCommand } from "../../src/vm/qemu.js";
import { firecrackerValidator, sharedFirecrackerDir } from "./firecracker-schema.js";

export const STANDIN_VERSION = "Firecracker v1.10.1 (slimroot test stand-in: the config booted on QEMU)";

/** Writes `dir`/firecracker; put `dir` first on PATH. */
export async function firecrackerStandin(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const script = join(dir, "firecracker");
  const self = fileURLToPath(import.meta.url);
  await writeFile(
    script,
    `#!/bin/sh
if [ "$1" = "--version" ]; then echo '${STANDIN_VERSION}'; exit 0; fi
argv=$('${process.execPath}' --import '${import.meta.resolve("tsx")}' '${self}' "$@") || exit 1
IFS='
'
set -f
exec $argv
`,
  );
  await chmod(script, 0o755);
  return script;
}

interface Config {
  "boot-source": { kernel_image_path: string; boot_args?: string; initrd_path?: string };
  drives?: { drive_id: string; path_on_host: string; is_read_only?: boolean }[];
  "machine-config"?: { vcpu_count: number; mem_size_mib: number };
  "network-interfaces"?: { host_dev_name: string; guest_mac?: string }[];
}

async function qemuArgv(args: string[]): Promise<string[]> {
  const i = args.indexOf("--config-file");
  if (!args.includes("--no-api") || i < 0 || !args[i + 1])
    throw new Error("usage: firecracker --no-api --config-file FILE");
  const configFile = args[i + 1]!;
  const config = JSON.parse(await readFile(configFile, "utf8")) as Config;
  const shared = sharedFirecrackerDir();
  if (shared) {
    const errors = firecrackerValidator(shared).errors(config);
    if (errors.length) throw new Error(`${args[i + 1]}: not a valid config: ${errors.join("; ")}`);
  }
  const boot = config["boot-source"];
  const machine = config["machine-config"] ?? { vcpu_count: 1, mem_size_mib: 128 };
  if (!boot.initrd_path) throw new Error("no initrd_path: slimroot always gives one");
  const tscKhz = hostTscKhz();
  const vm = {
    arch: "amd64",
    // Without the host's TSC rate, pc (which has an HPET) keeps a busy TCG host from hanging.
    machine: tscKhz ? "microvm" : "pc",
    accel: "tcg",
    kernel: boot.kernel_image_path,
    initrd: boot.initrd_path,
    memMiB: machine.mem_size_mib,
    cpus: machine.vcpu_count,
    forwards: [],
    qmpSocket: join(dirname(configFile), "standin-qmp.sock"),
    ...(tscKhz ? { tscKhz } : {}),
  } as const;
  const argv = qemuCommand(vm);
  // Firecracker's command line, with what QEMU under TCG needs: microvm has no keyboard
  // controller for reboot=k (a triple fault, reboot=t, ends it instead), and the TSC settings.
  const tcg = kernelCmdline(vm)
    .split(" ")
    .filter((a) => /^(reboot|tsc)/.test(a));
  argv[argv.indexOf("-append") + 1] = [boot.boot_args ?? "", ...tcg].join(" ").trim();
  const mmio = vm.machine === "microvm";
  // Firecracker's NICs are its tap interfaces only: QEMU's user-mode NIC goes.
  const at = argv.indexOf("-netdev");
  if (!argv[at + 3]?.endsWith("netdev=n0"))
    throw new Error("QEMU's command has changed: no user-mode NIC to drop");
  argv.splice(at, 4);
  for (const [n, nic] of (config["network-interfaces"] ?? []).entries()) {
    argv.push(
      "-netdev",
      `tap,id=t${n},ifname=${nic.host_dev_name},script=no,downscript=no`,
      "-device",
      `${mmio ? "virtio-net-device" : "virtio-net-pci"},netdev=t${n}${nic.guest_mac ? `,mac=${nic.guest_mac}` : ""}`,
    );
  }
  for (const d of config.drives ?? []) {
    argv.push(
      "-drive",
      `id=${d.drive_id},file=${d.path_on_host},format=raw,if=none,readonly=${d.is_read_only ? "on" : "off"}`,
      "-device",
      `${mmio ? "virtio-blk-device" : "virtio-blk-pci"},drive=${d.drive_id}`,
    );
  }
  if (argv.some((a) => a.includes("\n"))) throw new Error("a newline in an argument");
  return argv;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  qemuArgv(process.argv.slice(2)).then(
    (argv) => process.stdout.write(`${argv.join("\n")}\n`),
    (err: Error) => {
      process.stderr.write(`firecracker (stand-in): ${err.message}\n`);
      process.exitCode = 1;
    },
  );
}
