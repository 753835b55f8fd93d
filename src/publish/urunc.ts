/**
 * urunc's form (urunc-dev/urunc, a containerd shim: `nerdctl run --runtime io.containerd.urunc.v2`
 * or a pod with `runtimeClassName: urunc`): an ordinary container image holding the kernel and
 * the initramfs or ext4 image, described by `com.urunc.unikernel.*` annotations. urunc reads them
 * from the container spec's annotations, or, where the engine does not pass them on (Docker), from
 * `/urunc.json` in the image's root with every value base64-encoded
 * (docs/package/index.md, "Annotations"; pkg/unikontainers/annotations.go, GetUnikernelConfig).
 */
import { UserError } from "../util/errors.js";
import {
  bootLayer,
  bootLayers,
  type ConsumerForm,
  type FormInput,
  INITRD_PATH,
  KERNEL_PATH,
} from "./consumer.js";

// The names, from pkg/unikontainers/annotations.go (const annotType ... annotMountRootfs) and
// the UnikernelConfig struct's json tags, which urunc.json uses.
const A = {
  type: "com.urunc.unikernel.unikernelType",
  version: "com.urunc.unikernel.unikernelVersion",
  binary: "com.urunc.unikernel.binary",
  hypervisor: "com.urunc.unikernel.hypervisor",
  initrd: "com.urunc.unikernel.initrd",
  block: "com.urunc.unikernel.block",
  blkMntPoint: "com.urunc.unikernel.blkMntPoint",
  mountRootfs: "com.urunc.unikernel.mountRootfs",
  // Read by urunc releases before the process args took its place (pkg/unikontainers/config.go,
  // annotCmdLine); the current ones boot the image's Cmd, which is the same /init.
  cmdline: "com.urunc.unikernel.cmdline",
} as const;

/** unikernels.LinuxUnikernel in pkg/unikontainers/unikernels/linux.go. */
const LINUX = "linux";
/** The VMMs urunc pairs with a linux guest (supportedGuestMonitorPairs in annotations.go). */
export const URUNC_HYPERVISORS = ["qemu", "firecracker", "cloud-hypervisor"];
/** uruncJSONFilename: "named urunc.json ... in the root directory of the container's rootfs". */
const URUNC_JSON = "urunc.json";

// Where slimroot puts the files (any path urunc's allowedPathRe, ^[A-Za-z0-9._/-]+$, accepts):
// the kernel and initrd where the other forms put them, so their layers are shared.
const BLOCK = "boot/rootfs.ext4";

export const urunc: ConsumerForm = {
  name: "urunc",
  compose(i: FormInput) {
    const hypervisor = i.hypervisor ?? "qemu";
    if (!URUNC_HYPERVISORS.includes(hypervisor))
      throw new UserError(
        `--hypervisor ${hypervisor}: urunc boots a linux guest on ${URUNC_HYPERVISORS.join(", ")}`,
      );
    const a = i.artifact;
    // urunc's linux guest mounts a block image of ext2/3/4 only (Linux.SupportsFS in linux.go).
    if (a.kind === "disk" && a.identity.format !== "ext4")
      throw new UserError(
        `${i.file}: a ${a.identity.format} image; urunc's linux guest mounts ext2/3/4 only (build --format ext4)`,
      );
    const { layers, kernel } = bootLayers(i, "urunc");
    if (hypervisor === "firecracker" && kernel.format === "bzImage")
      throw new UserError(
        `${kernel.file}: a bzImage; Firecracker boots an uncompressed ELF vmlinux (slimroot kernel build gives one)`,
      );
    const annotations: Record<string, string> = {
      [A.type]: LINUX,
      [A.hypervisor]: hypervisor,
      [A.binary]: `/${KERNEL_PATH}`,
      [A.cmdline]: "/init",
      [A.mountRootfs]: "false",
    };
    if (a.kind === "initramfs") {
      annotations[A.initrd] = `/${INITRD_PATH}`;
    } else if (a.kind === "disk") {
      layers.push(bootLayer(BLOCK, { file: i.file, size: a.bytes }));
      annotations[A.block] = `/${BLOCK}`;
      annotations[A.blkMntPoint] = "/";
    }
    // urunc.json: the same names, each value base64 (urunc decodes every field it reads).
    const json: Record<string, string> = { [A.version]: "" };
    for (const [k, v] of Object.entries(annotations)) json[k] = Buffer.from(v).toString("base64");
    const sorted = Object.fromEntries(Object.entries(json).sort(([x], [y]) => (x < y ? -1 : 1)));
    layers.push([
      { name: URUNC_JSON, mode: 0o644, body: { bytes: Buffer.from(`${JSON.stringify(sorted)}\n`) } },
    ]);
    return { layers, annotations, cmd: ["/init"] };
  },
};
