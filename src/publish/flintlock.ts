/**
 * flintlock's form (liquidmetal-dev/flintlock; Cluster API Provider Microvm drives it): a
 * MicroVM's kernel and initrd each come from a container image and a file name inside it
 * (api/types/microvm.proto: `Kernel { image, filename }`, `Initrd { image, filename }`;
 * core/models/kernel.go, microvm.go). slimroot writes one image holding both, so a MicroVM
 * spec names the same tag twice, with the filenames below (docs/push.md has the spec).
 * Its root volume is a container image's own filesystem, not a disk file: a disk image is
 * refused, an initramfs is what flintlock boots.
 */
import { UserError } from "../util/errors.js";
import { bootKernel, type ConsumerForm, type FormInput } from "./consumer.js";
import type { TarMember } from "./tar-layer.js";

/** `kernel.filename` and `initrd.filename` to give flintlock. */
export const FLINTLOCK_KERNEL = "boot/vmlinux";
export const FLINTLOCK_INITRD = "boot/initrd";

export const flintlock: ConsumerForm = {
  name: "flintlock",
  compose(i: FormInput) {
    const a = i.artifact;
    if (a.kind === "disk")
      throw new UserError(
        `${i.file}: a ${a.identity.format} image; flintlock's root volume is a container image's filesystem, not a disk file (push an initramfs)`,
      );
    const kernel = bootKernel(i, "flintlock");
    const members: TarMember[] = [{ name: "boot/", mode: 0o755 }];
    if (kernel === "embedded") {
      members.push({ name: FLINTLOCK_KERNEL, mode: 0o644, body: { file: i.file, size: a.bytes } });
    } else {
      members.push(
        { name: FLINTLOCK_INITRD, mode: 0o644, body: { file: i.file, size: a.bytes } },
        { name: FLINTLOCK_KERNEL, mode: 0o644, body: { file: kernel.path, size: kernel.bytes } },
      );
      members.sort((x, y) => (x.name < y.name ? -1 : 1));
    }
    return { members, annotations: {} };
  },
};
