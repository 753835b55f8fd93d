/**
 * KubeVirt's containerDisk (kubevirt/kubevirt, a `containerDisk` volume): an image holding one
 * disk image, raw or qcow2, under /disk/. KubeVirt takes the only file there
 * (pkg/container-disk/container-disk.go, GetImage: "More than one file found in folder /disk,
 * only one disk is allowed"), owned by the qemu user 107 (user guide, "containerDisk":
 * `ADD --chown=107:107 ... /disk/`). A disk image only: an initramfs or a kernel is refused.
 * With --kernel the kernel goes in too, at /boot/vmlinux, for the VMI's
 * `spec.domain.firmware.kernelBoot.container` (kernelPath), since a slimroot disk has no
 * boot loader.
 */
import { describe } from "../artifact/identify.js";
import { UserError } from "../util/errors.js";
import { bootLayer, type ConsumerForm, type FormInput, KERNEL_PATH } from "./consumer.js";
import type { TarMember } from "./tar-layer.js";

export const CONTAINERDISK_DISK = "disk/disk.img";
/** KubeVirt's qemu user. */
const QEMU = 107;

export const containerdisk: ConsumerForm = {
  name: "containerdisk",
  compose(i: FormInput) {
    const a = i.artifact;
    if (a.kind !== "disk")
      throw new UserError(
        `${i.file}: ${describe(a)}; a containerDisk holds a disk image (build --format ext4, erofs or squashfs)`,
      );
    const disk: TarMember[] = [
      { name: "disk/", mode: 0o555, uid: QEMU, gid: QEMU },
      { name: CONTAINERDISK_DISK, mode: 0o440, uid: QEMU, gid: QEMU, body: { file: i.file, size: a.bytes } },
    ];
    const kernel = i.kernel ? [bootLayer(KERNEL_PATH, { file: i.kernel.path, size: i.kernel.bytes })] : [];
    return { layers: [...kernel, disk], annotations: {} };
  },
};
