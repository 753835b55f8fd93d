/**
 * The boot plan (plan.ts) from facts written here: what each combination of image, kernel,
 * VMM and options boots, and every refusal, without reading a file or starting a VM.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import type { DiskIdentity } from "../disk/identity.js";
import { parseKernelConfig } from "../kernel/config.js";
import type { VolumeFacts } from "./disks.js";
import { kernelRule } from "./memory.js";
import { failureReason } from "./panic.js";
import { type BootFacts, type BootOptions, describePlan, kernelNeeds, planBoot } from "./plan.js";
import { runConfCpio, runConfCpioSize } from "./runconf.js";

const files = (mib: number) => ({ tmpfsBytes: mib << 20, inodes: 300 });
const id = (format: "ext4" | "erofs" | "squashfs", byte: number): DiskIdentity => ({
  format,
  fstype: format,
  offset: 1128,
  id: Buffer.alloc(16, byte),
});
/** Debian's cloud kernel, as far as the plan reads it. */
const DEBIAN_CONFIG = [
  "CONFIG_VIRTIO_BLK=m",
  "CONFIG_EXT4_FS=y",
  "CONFIG_EXT4_FS_SECURITY=y",
  "CONFIG_VIRTIO_MMIO=m",
  "CONFIG_ACPI=y",
  "CONFIG_PCI=y",
  "CONFIG_BLK_DEV_INITRD=y",
  "CONFIG_SERIAL_8250_CONSOLE=y",
  "CONFIG_KVM_GUEST=y",
  "CONFIG_VIRTIO_NET=m",
  "CONFIG_VIRTIO_VSOCKETS=m",
].join("\n");
/** slimroot's kernel: virtio-mmio devices from the command line, no ACPI. */
const SLIM_CONFIG = DEBIAN_CONFIG.replace(
  "CONFIG_VIRTIO_MMIO=m",
  "CONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y",
)
  .replace("CONFIG_ACPI=y", "")
  .replace("CONFIG_VIRTIO_BLK=m", "CONFIG_VIRTIO_BLK=y");

/** The memory rule of a measured kernel (memory.ts). */
const rule = (builder: "debian" | "slimroot", release: string) =>
  kernelRule({ arch: "amd64", builder, release, pageSize: 4096, pageSizeKnown: true });
const initramfs = (over: Partial<{ lz4: boolean; mib: number }> = {}): BootFacts => ({
  arch: "amd64",
  image: {
    kind: "initramfs",
    path: "app.cpio.gz",
    arch: "amd64",
    bytes: 1_000_001,
    lz4: over.lz4 ?? false,
    files: files(over.mib ?? 3),
  },
  volumes: [],
  kernel: {
    path: "/k/vmlinuz",
    kind: { arch: "amd64", format: "bzImage" },
    label: "debian",
    config: parseKernelConfig(DEBIAN_CONFIG),
    gzip: false,
    modules: { path: "/k/modules.cpio", bytes: 400_000, files: files(1) },
    rule: rule("debian", "6.1.0-27-cloud-amd64"),
  },
  host: { accel: "tcg", machine: "microvm", tscKhz: 2_000_000 },
});
const disk = (format: "ext4" | "erofs" = "ext4"): BootFacts => ({
  ...initramfs(),
  image: { kind: "disk", path: `root.${format}`, identity: id(format, 1), initBytes: 21_000 },
});
const embedded = (): BootFacts => ({
  arch: "amd64",
  image: {
    kind: "embedded",
    path: "app.vmlinuz",
    kernel: { arch: "amd64", format: "bzImage" },
    bytes: 4_000_000,
    files: files(2),
    rule: rule("slimroot", "6.1.119"),
  },
  volumes: [],
  host: { accel: "tcg", machine: "microvm", tscKhz: 2_000_000 },
});
const volume = (path: string, byte: number, readOnly = false): VolumeFacts => ({
  file: `vol${byte}.ext4`,
  path,
  readOnly,
  isFile: true,
  identity: id("ext4", byte),
});
const opts = (o: Partial<BootOptions> = {}): BootOptions => ({
  vmm: "qemu",
  forwards: [],
  cpus: 1,
  env: [],
  stopGraceMs: 10_000,
  reportKey: "ab".repeat(16),
  ...o,
});

test("an initramfs on QEMU: image, modules, run.conf in that order; microvm with ACPI for Debian's kernel", () => {
  const p = planBoot(
    initramfs(),
    opts({ forwards: [{ proto: "tcp", hostAddr: "127.0.0.1", hostPort: 8080, guestPort: 80 }] }),
  );
  assert.deepEqual(
    p.initrd.map((x) => x.kind),
    ["image", "modules", "run.conf"],
  );
  assert.equal(p.qemu?.acpi, true);
  assert.equal(
    p.cmdline,
    "console=ttyS0 reboot=t panic=-1 quiet tsc_early_khz=2000000 tsc=reliable noreplace-smp 8250.nr_uarts=1",
  );
  // --timeline: the kernel's timestamps and initcall times on the console instead of quiet.
  assert.equal(
    planBoot(initramfs(), opts({ timeline: true })).cmdline,
    "console=ttyS0 reboot=t panic=-1 tsc_early_khz=2000000 tsc=reliable noreplace-smp 8250.nr_uarts=1 printk.time=1 initcall_debug ignore_loglevel",
  );
  assert.equal(p.memory.mib, 256);
  assert.match(p.memory.reason, /^sized from the image/);
  assert.equal(p.network.kind, "user");
  assert.deepEqual(p.stop, { how: "ctrl-alt-del", graceMs: 10_000 });
  assert.match(p.runConf, /^ip 10\.0\.2\.15\/24$/m);
  assert.match(p.runConf, /^modules \/etc\/slimroot\/modules$/m);
  assert.ok(describePlan(p).some((l) => /^memory: 256 MiB/.test(l)));
});

test("an lz4 image goes last (the kernel's lz4 decoder reads past its end)", () => {
  const p = planBoot(initramfs({ lz4: true }), opts());
  assert.deepEqual(
    p.initrd.map((x) => x.kind),
    ["modules", "run.conf", "image"],
  );
});

test("memory: sized from what unpacks into RAM; a --mem below the need is refused, naming it", () => {
  const big = planBoot(initramfs({ mib: 150 }), opts());
  assert.ok(big.memory.mib > 300, String(big.memory.mib));
  assert.throws(
    () => planBoot(initramfs({ mib: 150 }), opts({ memMiB: 256 })),
    /--mem 256: app\.cpio\.gz needs at least \d+ MiB/,
  );
  const given = planBoot(initramfs(), opts({ memMiB: 1000 }));
  assert.deepEqual(given.memory.mib, 1000);
  assert.match(given.memory.reason, /^--mem/);
});

test("slimroot's kernel (command-line devices): microvm without ACPI, pci=off, no APIC timer to calibrate", () => {
  const f = initramfs();
  const p = planBoot({ ...f, kernel: { ...f.kernel!, config: parseKernelConfig(SLIM_CONFIG) } }, opts());
  assert.equal(p.qemu?.acpi, false);
  assert.match(p.cmdline, / pci=off/);
  assert.match(p.cmdline, / noapictimer no_timer_check /);
  // Debian's kernel reads microvm's ACPI tables: it keeps its APIC timer (without it, it hangs).
  assert.doesNotMatch(planBoot(f, opts()).cmdline, /noapictimer/);
});

test("a disk root: our init alone first, the root read-only under --read-only, volumes with their modes", () => {
  const f = { ...disk(), volumes: [volume("/data", 2), volume("/ro", 3, true)] };
  const p = planBoot(f, opts({ readOnly: true }));
  assert.deepEqual(
    p.initrd.map((x) => x.kind),
    ["init", "modules", "run.conf"],
  );
  assert.deepEqual(
    p.disks.map((d) => [d.mount, d.readOnly]),
    [
      ["/", true],
      ["/data", false],
      ["/ro", true],
    ],
  );
  assert.match(p.runConf, /^root ext4 1128 (01){16} ro$/m);
  assert.match(p.runConf, /^volume ext4 1128 (02){16} rw \/data$/m);
  assert.deepEqual(kernelNeeds(f, opts()).modules, ["overlay", "virtio_blk", "ext4"]);
  assert.deepEqual(kernelNeeds(f, opts({ vmm: "firecracker", vsockCid: 3 })).modules, [
    "virtio_blk",
    "vmw_vsock_virtio_transport",
    "overlay",
    "ext4",
  ]);
  assert.equal(kernelNeeds(disk(), opts()).transport, "mmio");
  assert.equal(kernelNeeds({ ...disk(), host: { accel: "tcg", machine: "pc" } }, opts()).transport, "pci");
});

test("an embedded kernel: its run.conf (with --volume's record) in an initrd of its own; the kernel is the image", () => {
  const p = planBoot({ ...embedded(), volumes: [volume("/data", 2)] }, opts());
  assert.equal(p.kernel.embedded, true);
  assert.equal(p.kernel.path, "app.vmlinuz");
  assert.deepEqual(
    p.initrd.map((x) => x.kind),
    ["run.conf"],
  );
  // The init reads run.conf's volume records before it reads anything else (init/root.c).
  assert.match(p.runConf, /^volume ext4 1128 (02){16} rw \/data$/m);
  assert.equal(p.qemu?.acpi, false);
  assert.ok(!p.cmdline.includes("slimroot.conf"), "no run settings on the command line the app can read");
  // Sized from the built-in image, as an initramfs is.
  assert.equal(
    planBoot({ ...embedded(), image: { ...embedded().image, files: files(150) } as never }, opts()).memory
      .mib > 300,
    true,
  );
});

test("every refusal, in one line", () => {
  const refused: [BootFacts, Partial<BootOptions>, RegExp][] = [
    [initramfs(), { tap: "tap0" }, /^--tap: only with --vmm firecracker/],
    [initramfs(), { vsockCid: 3 }, /^--vsock: only with --vmm firecracker/],
    [
      initramfs(),
      { vmm: "firecracker", forwards: [{ proto: "tcp", hostAddr: "127.0.0.1", hostPort: 1, guestPort: 1 }] },
      /give --tap NAME/,
    ],
    [
      initramfs(),
      {
        vmm: "firecracker",
        tap: "tap5",
        forwards: [{ proto: "tcp", hostAddr: "127.0.0.1", hostPort: 1, guestPort: 1 }],
      },
      /the guest is 172\.16\.5\.2 on tap5/,
    ],
    [initramfs(), { vmm: "firecracker", cpus: 33 }, /at most 32 vCPUs/],
    [initramfs(), { vmm: "firecracker", guestIp: "10.0.0.2/24" }, /--guest-ip and --gateway need --tap/],
    [
      initramfs(),
      { readOnlyFlag: true },
      /^--read-only: for an ext4 root \(app\.cpio\.gz is not a disk image/,
    ],
    [disk("erofs"), { readOnlyFlag: true }, /^--read-only: .* is erofs, read-only anyway/],
    [embedded(), { readOnlyFlag: true }, /^--read-only: .*a kernel with its app in RAM/],
    [embedded(), { vmm: "firecracker" }, /only QEMU boots it so far/],
    [embedded(), { kernel: "/k" }, /--kernel and --modules do not apply/],
    [
      { ...initramfs(), kernel: { ...initramfs().kernel!, kind: { arch: "arm64", format: "arm64-image" } } },
      {},
      /kernel debian is arm64, but the image app\.cpio\.gz is amd64/,
    ],
    [
      { ...disk(), kernel: { ...disk().kernel!, config: parseKernelConfig("CONFIG_EXT4_FS=y") } },
      {},
      /cannot attach disks: it lacks CONFIG_VIRTIO_BLK/,
    ],
    [{ ...disk("erofs") }, {}, /cannot mount root\.erofs: it lacks CONFIG_EROFS_FS/],
    [
      {
        ...initramfs(),
        kernel: {
          ...initramfs().kernel!,
          config: parseKernelConfig(
            "CONFIG_BLK_DEV_INITRD=y\nCONFIG_SERIAL_8250_CONSOLE=y\nCONFIG_KVM_GUEST=y\nCONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_NET=y",
          ),
        },
      },
      { vmm: "firecracker", tap: "tap0" },
      /cannot work with Firecracker: no CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES/,
    ],
    [
      {
        ...initramfs(),
        arch: "arm64",
        kernel: { ...initramfs().kernel!, kind: { arch: "arm64", format: "elf" } },
      },
      { vmm: "firecracker" },
      /Firecracker on aarch64 boots an Image/,
    ],
    [
      { ...initramfs(), volumes: [volume("/a", 2), volume("/b", 2)] },
      {},
      /the same filesystem as vol2\.ext4/,
    ],
    [{ ...initramfs(), volumes: [volume("/a", 2), volume("/a", 3)] }, {}, /\/a is already a volume/],
    [{ ...initramfs(), volumes: [volume("/", 2)] }, {}, /the root is the image/],
    [
      { ...initramfs(), volumes: [{ ...volume("/a", 2), isFile: false }] },
      {},
      /--volume vol2\.ext4: no such file/,
    ],
    [
      { ...initramfs(), volumes: [{ ...volume("/a", 2), identity: undefined }] },
      {},
      /not an ext4, erofs or squashfs image/,
    ],
  ];
  for (const [f, o, message] of refused) {
    assert.throws(
      () => planBoot(f, opts(o)),
      (err: Error) => {
        assert.match(err.message, message);
        assert.ok(!err.message.includes("\n"), err.message);
        return true;
      },
    );
  }
});

test("a boot that must not write its image (build's verification) takes any root; only the user's --read-only is refused", () => {
  assert.equal(planBoot(initramfs(), opts({ readOnly: true })).disks.length, 0);
  const erofs = disk("erofs");
  const withErofs = { ...erofs.kernel!, config: undefined };
  assert.equal(planBoot({ ...erofs, kernel: withErofs }, opts({ readOnly: true })).disks[0]?.readOnly, true);
  assert.equal(planBoot(disk("ext4"), opts({ readOnly: true })).disks[0]?.readOnly, true);
  assert.equal(planBoot(disk("ext4"), opts()).disks[0]?.readOnly, false);
});

test("Firecracker: the tap's network, its boot args, the vmlinux extracted from a bzImage, no stop request", () => {
  const p = planBoot(initramfs(), opts({ vmm: "firecracker", tap: "tap3", vsockCid: 7 }));
  assert.deepEqual(p.network, {
    kind: "tap",
    tap: "tap3",
    guest: { ip: "172.16.3.2/30", gateway: "172.16.3.1" },
  });
  assert.equal(p.kernel.convert, "vmlinux");
  assert.equal(p.stop.how, "kill");
  assert.equal(p.qemu, undefined);
  assert.match(p.cmdline, /reboot=k/);
  assert.deepEqual(p.minFirecracker, [1, 8]);
  assert.ok(p.notes.some((n) => /ACPI only/.test(n)));
  assert.ok(p.notes.some((n) => /the guest is 172\.16\.3\.2 on tap3/.test(n)));
});

test("the run.conf archive's size is known before it is written (the plan sizes the initrd)", async () => {
  await fc.assert(
    fc.asyncProperty(fc.string(), fc.option(fc.stringMatching(/^[0-9a-f]{32}$/)), async (text, key) => {
      const k = key ?? undefined;
      assert.equal(runConfCpioSize(text, k), (await runConfCpio(text, k)).length);
    }),
    { numRuns: 50 },
  );
});

test("a VM that ends while the image unpacks: the memory was too small, and what to give", () => {
  const p = planBoot(embedded(), opts());
  assert.equal(p.memory.sizedMiB, 256);
  // The kernel's line can be empty, and it can come in pieces among others.
  assert.equal(
    failureReason("...\r\nKernel panic - not syncing: \r\n", true, p),
    "the built-in initramfs did not fit in 256 MiB of guest memory (Kernel panic - not syncing:); give --mem 512",
  );
  const small = planBoot(embedded(), opts({ memMiB: 25 }));
  assert.equal(
    failureReason(
      "Kernel panic - not syncing: System is deadlocked on memory\r\nKernel Offset: disabled",
      true,
      small,
    ),
    "the built-in initramfs did not fit in 25 MiB of guest memory (Kernel panic - not syncing: System is deadlocked on memory); give --mem 256 (or leave --mem out)",
  );
  assert.equal(
    failureReason(
      "Kernel panic - not syncing: write error\n---[ end Kernel panic - not syncing: write error ]---\n",
      true,
      small,
    ),
    "the built-in initramfs did not fit in 25 MiB of guest memory (Kernel panic - not syncing: write error); give --mem 256 (or leave --mem out)",
  );
  assert.match(
    failureReason("", false, small) ?? "",
    /^the kernel stopped before its first console line in 25 MiB .* give --mem 256/,
  );
  assert.match(
    failureReason("Kernel panic - not syncing: write error", true, planBoot(initramfs(), opts())) ?? "",
    /^the initramfs did not fit/,
  );
  // Other panics stay as the kernel said them; a console with nothing in it says nothing.
  assert.equal(
    failureReason("Kernel panic - not syncing: VFS: Unable to mount root fs\n", true, p),
    "Kernel panic - not syncing: VFS: Unable to mount root fs",
  );
  assert.equal(
    failureReason("Kernel panic - not syncing: ", true, planBoot(disk(), opts())),
    "Kernel panic - not syncing:",
  );
  assert.equal(failureReason("booting\n", true, p), undefined);
  assert.equal(failureReason("", false, p), undefined);
});
