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
import { bootLayers, type ConsumerForm, type FormInput } from "./consumer.js";

export const flintlock: ConsumerForm = {
  name: "flintlock",
  compose(i: FormInput) {
    const a = i.artifact;
    if (a.kind === "disk")
      throw new UserError(
        `${i.file}: a ${a.identity.format} image; flintlock's root volume is a container image's filesystem, not a disk file (push an initramfs)`,
      );
    // kernel.filename boot/vmlinux, initrd.filename boot/initrd (consumer.ts, bootLayers).
    return { layers: bootLayers(i, "flintlock").layers, annotations: {} };
  },
};
