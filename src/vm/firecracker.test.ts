import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  type ConfigValidator,
  firecrackerValidator,
  NO_SHARED,
  sharedFirecrackerDir,
} from "../../test/support/firecracker-schema.js";
import { parseKernelConfig } from "../kernel/config.js";
import {
  checkFirecrackerKernel,
  defaultTapNetwork,
  type FirecrackerVm,
  firecrackerBootArgs,
  firecrackerConfig,
  guestMac,
  interfaceNameProblem,
  parseFirecrackerVersion,
  versionAtLeast,
} from "./firecracker.js";
import type { Disk } from "./launcher.js";

const shared = sharedFirecrackerDir();
const schema: ConfigValidator | undefined = shared ? firecrackerValidator(shared) : undefined;
const readJson = (name: string) =>
  JSON.parse(readFileSync(join(shared!, name), "utf8")) as Record<string, unknown>;

const base: FirecrackerVm = {
  kernel: "/tmp/x/vmlinux",
  bootArgs: firecrackerBootArgs("amd64"),
  initrd: "/tmp/x/initrd",
  disks: [],
  memMiB: 256,
  cpus: 1,
};

describe("Firecracker config files against Firecracker's schema (firecracker.yaml definitions)", () => {
  test("Firecracker's own test configs validate (positive examples)", (t) => {
    if (!schema) return t.skip(NO_SHARED);
    for (const name of ["vm_config.json", "vm_config_network.json"]) {
      assert.deepEqual(schema.errors(readJson(name)), [], name);
    }
  });

  test("broken configs fail (negative examples)", (t) => {
    if (!schema) return t.skip(NO_SHARED);
    const good = readJson("vm_config_network.json");
    type Obj = Record<string, unknown>;
    type Config = Obj & {
      "boot-source"?: Obj;
      "machine-config": Obj;
      drives: Obj[];
      "network-interfaces": Obj[];
    };
    const broken: [string, (c: Config) => void, RegExp][] = [
      ["no boot-source", (c) => delete c["boot-source"], /boot-source/],
      ["no kernel", (c) => delete c["boot-source"]!.kernel_image_path, /kernel_image_path/],
      ["misspelt top-level key", (c) => (c.drive = c.drives), /additional properties/],
      ["misspelt boot-source key", (c) => (c["boot-source"]!.initrd = "x"), /additional properties/],
      ["0 vCPUs", (c) => (c["machine-config"].vcpu_count = 0), /vcpu_count must be >= 1/],
      ["33 vCPUs", (c) => (c["machine-config"].vcpu_count = 33), /vcpu_count must be <= 32/],
      [
        "memory as a string",
        (c) => (c["machine-config"].mem_size_mib = "1024"),
        /mem_size_mib must be integer/,
      ],
      ["drive without is_root_device", (c) => delete c.drives[0]!.is_root_device, /is_root_device/],
      ["unknown cache type", (c) => (c.drives[0]!.cache_type = "Fast"), /cache_type must be equal to one of/],
      ["read-only as a string", (c) => (c.drives[0]!.is_read_only = "yes"), /is_read_only must be boolean/],
      ["interface without a tap", (c) => delete c["network-interfaces"][0]!.host_dev_name, /host_dev_name/],
      [
        "reserved vsock CID",
        (c) => (c.vsock = { guest_cid: 2, uds_path: "/tmp/v.sock" }),
        /guest_cid must be >= 3/,
      ],
      ["vsock without a socket", (c) => (c.vsock = { guest_cid: 3 }), /uds_path/],
    ];
    for (const [what, breakIt, expected] of broken) {
      const c = structuredClone(good) as Config;
      breakIt(c);
      const errors = schema.errors(c);
      assert.ok(errors.length > 0, `${what}: accepted`);
      assert.match(errors.join("; "), expected, what);
    }
  });

  test("every config slimroot writes validates: disks, tap, vsock, any size (property)", (t) => {
    if (!schema) return t.skip(NO_SHARED);
    const disk = fc.record({
      path: fc.constantFrom("/srv/app.erofs", "/data/vol.ext4", "rel/x.img"),
      mount: fc.constantFrom("/", "/var/lib/app", "/data"),
      readOnly: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.array(disk, { maxLength: 4 }),
        fc.integer({ min: 1, max: 32 }),
        fc.integer({ min: 16, max: 1 << 20 }),
        fc.option(fc.stringMatching(/^[a-z][a-z0-9-]{0,14}$/), { nil: undefined }),
        fc.option(fc.integer({ min: 3, max: 0xffffffff }), { nil: undefined }),
        (disks: Disk[], cpus, memMiB, tap, cid) => {
          const config = firecrackerConfig({
            ...base,
            disks,
            cpus,
            memMiB,
            ...(tap ? { tap } : {}),
            ...(cid ? { vsock: { cid, udsPath: "/tmp/x/vsock.sock" } } : {}),
            logPath: "/tmp/x/firecracker.log",
          });
          assert.deepEqual(schema.errors(config), []);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("firecrackerConfig", () => {
  test("the root disk comes first; volumes follow, read-only where they are; nothing is Firecracker's root device", () => {
    const config = firecrackerConfig({
      ...base,
      disks: [
        { path: "/d/data.ext4", mount: "/var/lib/app", readOnly: false },
        { path: "/d/nginx.erofs", mount: "/", readOnly: true },
        { path: "/d/static.sqfs", mount: "/srv", readOnly: true },
      ],
    });
    assert.deepEqual(config.drives, [
      { drive_id: "root", path_on_host: "/d/nginx.erofs", is_root_device: false, is_read_only: true },
      { drive_id: "vol1", path_on_host: "/d/data.ext4", is_root_device: false, is_read_only: false },
      { drive_id: "vol2", path_on_host: "/d/static.sqfs", is_root_device: false, is_read_only: true },
    ]);
  });

  test("boot-source: kernel, the init's command line, the initrd; no tap, no interface; no vsock unless asked", () => {
    const config = firecrackerConfig(base);
    assert.deepEqual(config["boot-source"], {
      kernel_image_path: "/tmp/x/vmlinux",
      boot_args: "console=ttyS0 reboot=k panic=1 quiet i8042.noaux i8042.nomux i8042.dumbkbd",
      initrd_path: "/tmp/x/initrd",
    });
    assert.deepEqual(config["network-interfaces"], []);
    assert.equal("vsock" in config, false);
    assert.deepEqual(config["machine-config"], { vcpu_count: 1, mem_size_mib: 256, smt: false });
    assert.deepEqual(config.entropy, {}, "virtio-rng, as on QEMU");
  });

  test("the guest MAC: derived from the tap's name only, locally administered unicast, distinct per tap", () => {
    assert.equal(guestMac("tap0"), guestMac("tap0"));
    assert.notEqual(guestMac("tap0"), guestMac("tap1"));
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 15 }), (name) => {
        const mac = guestMac(name);
        assert.match(mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
        const first = Number.parseInt(mac.slice(0, 2), 16);
        assert.equal(first & 1, 0, "unicast");
        assert.equal(first & 2, 2, "locally administered");
      }),
      { numRuns: 200 },
    );
  });

  test("the default guest address per tap: 172.16.N.2/30 behind 172.16.N.1", () => {
    assert.deepEqual(defaultTapNetwork("tap0"), { ip: "172.16.0.2/30", gateway: "172.16.0.1" });
    assert.deepEqual(defaultTapNetwork("fc-tap7"), { ip: "172.16.7.2/30", gateway: "172.16.7.1" });
    assert.deepEqual(defaultTapNetwork("vmnet"), { ip: "172.16.0.2/30", gateway: "172.16.0.1" });
    assert.deepEqual(defaultTapNetwork("tap300"), { ip: "172.16.0.2/30", gateway: "172.16.0.1" });
  });
});

describe("checkFirecrackerKernel", () => {
  const config = (lines: string[]) => parseKernelConfig(lines.map((l) => `CONFIG_${l}`).join("\n"));
  const basics = ["BLK_DEV_INITRD=y", "SERIAL_8250_CONSOLE=y", "KVM_GUEST=y"];
  /** An x86_64 kernel with the basics and `lines`, for a VM with devices. */
  const withDevices = (lines: string[]) =>
    checkFirecrackerKernel(config([...basics, "VIRTIO_NET=m", ...lines]), "amd64", "K", { net: true });

  test("no command-line devices and no ACPI: the devices are invisible, said in one line", () => {
    const v = withDevices(["VIRTIO_MMIO=y", "PCI=y"]);
    assert.match(
      v.fatal ?? "",
      /^kernel K cannot work with Firecracker: no CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES .* and no ACPI/,
    );
    assert.doesNotMatch(v.fatal!, /\n/);
  });

  test("a modular virtio_mmio does not read the command line: ACPI is the only way", () => {
    const v = withDevices(["VIRTIO_MMIO=m", "VIRTIO_MMIO_CMDLINE_DEVICES=y"]);
    assert.match(v.fatal ?? "", /no ACPI/);
  });

  test("ACPI only (Debian's cloud kernel, Firecracker's CI kernel): works from Firecracker 1.8", () => {
    const v = withDevices(["VIRTIO_MMIO=m", "ACPI=y", "PCI=y"]);
    assert.equal(v.fatal, undefined);
    assert.deepEqual(v.minVersion, [1, 8]);
    assert.match(v.notes.join("\n"), /needs Firecracker 1\.8 or later/);
  });

  test("command-line devices with a built-in virtio_mmio: any release", () => {
    const v = withDevices(["VIRTIO_MMIO=y", "VIRTIO_MMIO_CMDLINE_DEVICES=y"]);
    assert.deepEqual(v, { notes: [] });
  });

  test("each device needs its driver: a tap virtio_net, disks virtio_blk, vsock its transport", () => {
    const full = [...basics, "VIRTIO_MMIO=y", "VIRTIO_MMIO_CMDLINE_DEVICES=y"];
    const check = (lines: string[], devices: { net?: boolean; disks?: boolean; vsock?: boolean }) =>
      checkFirecrackerKernel(config([...full, ...lines]), "amd64", "K", devices).fatal;
    assert.match(check([], { net: true }) ?? "", /no CONFIG_VIRTIO_NET, so no network on the tap$/);
    assert.match(
      check(["VIRTIO_NET=m"], { net: true, disks: true }) ?? "",
      /no CONFIG_VIRTIO_BLK, so no disks$/,
    );
    assert.match(
      check(["VIRTIO_BLK=m"], { disks: true, vsock: true }) ?? "",
      /no CONFIG_VIRTIO_VSOCKETS, so no vsock$/,
    );
    assert.equal(
      check(["VIRTIO_NET=m", "VIRTIO_BLK=y", "VIRTIO_VSOCKETS=m"], { net: true, disks: true, vsock: true }),
      undefined,
    );
  });

  test("what every VM needs: an initrd, the serial console, kvm-clock on x86_64", () => {
    assert.match(
      checkFirecrackerKernel(config(["SERIAL_8250_CONSOLE=y", "KVM_GUEST=y"]), "amd64", "K", {}).fatal!,
      /BLK_DEV_INITRD/,
    );
    assert.match(
      checkFirecrackerKernel(config(["BLK_DEV_INITRD=y", "KVM_GUEST=y"]), "amd64", "K", {}).fatal!,
      /SERIAL_8250_CONSOLE/,
    );
    assert.match(
      checkFirecrackerKernel(config(["BLK_DEV_INITRD=y", "SERIAL_8250_CONSOLE=y"]), "amd64", "K", {}).fatal!,
      /KVM_GUEST/,
    );
    assert.equal(
      checkFirecrackerKernel(config(["BLK_DEV_INITRD=y", "SERIAL_8250_CONSOLE=y"]), "arm64", "K", {}).fatal,
      undefined,
    );
  });

  test("without devices nothing more is needed; an unknown config is one note", () => {
    assert.deepEqual(checkFirecrackerKernel(config(basics), "amd64", "K", {}), { notes: [] });
    const v = checkFirecrackerKernel(undefined, "amd64", "K", { net: true });
    assert.equal(v.fatal, undefined);
    assert.equal(v.notes.length, 1);
  });

  test("Firecracker's own CI guest configs pass", (t) => {
    if (!shared) return t.skip(NO_SHARED);
    for (const [arch, file] of [
      ["amd64", "microvm-kernel-ci-x86_64-6.1.config"],
      ["arm64", "microvm-kernel-ci-aarch64-6.1.config"],
    ] as const) {
      const v = checkFirecrackerKernel(
        parseKernelConfig(readFileSync(join(shared, file), "utf8")),
        arch,
        file,
        {
          net: true,
          disks: true,
          vsock: true,
        },
      );
      assert.equal(v.fatal, undefined, file);
    }
  });

  test("release numbers", () => {
    assert.deepEqual(
      parseFirecrackerVersion("Firecracker v1.10.1\n\nSupported snapshot data format versions: v1.0.0"),
      [1, 10],
    );
    assert.equal(parseFirecrackerVersion("something else"), undefined);
    assert.ok(versionAtLeast([1, 10], [1, 8]));
    assert.ok(versionAtLeast([2, 0], [1, 8]));
    assert.ok(!versionAtLeast([1, 7], [1, 8]));
  });
});

test("interface names: the kernel's rule (dev_valid_name) and no leading '-' or control character", () => {
  for (const ok of ["tap0", "tap0;reboot", "$(id)", "a", "x".repeat(15), "t\u00e9p"])
    assert.equal(interfaceNameProblem(ok), undefined, ok);
  const refused: [string, RegExp][] = [
    ["", /1 to 15 bytes \(this is 0\)/],
    ["x".repeat(16), /1 to 15 bytes \(this is 16\)/],
    ["\u00e9".repeat(8), /this is 16/],
    [".", /not an interface name/],
    ["..", /not an interface name/],
    ["-rf", /would read as an option/],
    ["a/b", /no "\/"/],
    ["eth0:1", /no ":"/],
    ["tap 0", /no whitespace/],
    ["tap\t0", /no whitespace/],
    ["tap\n0", /no whitespace/],
    ["t\u00e0", /no whitespace/], // UTF-8 C3 A0: the kernel's isspace() takes 0xa0
    ["tap\x1b[2J", /no control characters/],
  ];
  for (const [name, why] of refused)
    assert.match(interfaceNameProblem(name) ?? "(accepted)", why, JSON.stringify(name));
});
