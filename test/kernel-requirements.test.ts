/**
 * The one table of kernel requirements (src/kernel/requirements.ts) is what slimroot's
 * fragments build, what the README lists, and what run's checks ask of a kernel.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { README, withTable } from "../scripts/kernel-requirements.js";
import { parseKernelConfig } from "../src/kernel/config.js";
import { cachedKernel } from "../src/kernel/fetch.js";
import { fragmentFiles } from "../src/kernel/kconfig.js";
import { fetchedKernelDir } from "../src/kernel/manifest.js";
import {
  hasCmdlineDevices,
  lockedOptions,
  missingOptions,
  requirementsMarkdown,
  type Use,
} from "../src/kernel/requirements.js";
import { kernelDiskProblem } from "../src/vm/disks.js";
import { checkFirecrackerKernel } from "../src/vm/firecracker.js";

/** Options kconfig selects for another (not user-visible: a fragment cannot set them). */
const SELECTED: Record<string, string> = { CONFIG_LZ4_DECOMPRESS: "selected by CONFIG_EROFS_FS_ZIP" };

test("slimroot's fragments set every option of the table, for each architecture", () => {
  for (const arch of ["amd64", "arm64"] as const) {
    const text = fragmentFiles(arch)
      .map((f) => readFileSync(f, "utf8"))
      .join("\n");
    const lacking = [...lockedOptions(arch).keys()].filter(
      (o) => !SELECTED[o] && !new RegExp(`^${o}=y$`, "m").test(text),
    );
    assert.deepEqual(lacking, [], arch);
  }
});

test("the README's list is the table (node --import tsx scripts/kernel-requirements.ts writes it)", () => {
  const readme = readFileSync(README, "utf8");
  assert.equal(readme, withTable(readme));
  assert.ok(readme.includes(requirementsMarkdown()));
});

test("a use asks for its options, a module where it may be one, built in where it must", () => {
  const c = parseKernelConfig(
    "CONFIG_EXT4_FS=m\nCONFIG_EXT4_FS_SECURITY=y\nCONFIG_VIRTIO_MMIO=m\nCONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n",
  );
  assert.deepEqual(missingOptions(c, "disk:ext4"), []);
  assert.deepEqual(
    missingOptions(c, "cmdline-devices").map((m) => m.option),
    ["CONFIG_VIRTIO_MMIO=y"],
  );
  assert.equal(hasCmdlineDevices(c), false);
  assert.deepEqual(missingOptions(c, "firecracker-devices"), []);
  // KVM_GUEST is the amd64 row's: not asked of an arm64 kernel.
  assert.deepEqual(
    missingOptions(parseKernelConfig(""), "firecracker", "arm64").map((m) => m.name),
    ["CONFIG_BLK_DEV_INITRD", "CONFIG_SERIAL_8250_CONSOLE"],
  );
  // run's disk check names the table's options, in its order.
  assert.equal(
    kernelDiskProblem(
      [{ path: "a.sqfs", mount: "/", readOnly: true, format: "squashfs" }],
      parseKernelConfig("CONFIG_VIRTIO_BLK=m\nCONFIG_SQUASHFS=m\n"),
      "K",
    ),
    "kernel K cannot mount a.sqfs: it lacks CONFIG_SQUASHFS_ZSTD=y, CONFIG_SQUASHFS_XATTR=y",
  );
  assert.equal(
    kernelDiskProblem(
      [{ path: "a.ext4", mount: "/", readOnly: false, format: "ext4" }],
      parseKernelConfig("CONFIG_EXT4_FS=y\n"),
      "K",
    ),
    "kernel K cannot attach disks: it lacks CONFIG_VIRTIO_BLK",
  );
});

const USES: Use[] = [
  "firecracker",
  "firecracker-devices",
  "net",
  "disks",
  "vsock",
  "disk:ext4",
  "disk:erofs",
  "disk:squashfs",
];

test("Debian's cloud kernels meet every check run makes, but take devices through ACPI", async (t) => {
  for (const arch of ["amd64", "arm64"] as const) {
    const dir = fetchedKernelDir(arch);
    const m = await cachedKernel(dir);
    if (!m?.config || !existsSync(join(dir, m.config)))
      return t.skip(`no fetched ${arch} kernel with its config (slimroot kernel fetch --arch ${arch})`);
    const c = parseKernelConfig(readFileSync(join(dir, m.config), "utf8"));
    for (const use of USES) assert.deepEqual(missingOptions(c, use, arch), [], `${arch} ${use}`);
    assert.equal(hasCmdlineDevices(c), false);
    const v = checkFirecrackerKernel(c, arch, "debian", { net: true, disks: true, vsock: true });
    assert.equal(v.fatal, undefined);
  }
});
