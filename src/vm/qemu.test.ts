import assert from "node:assert/strict";
import { test } from "node:test";
import { shellQuote } from "../util/shell.js";
import { parsePortForward } from "./ports.js";
import { chooseAccel, chooseMachine, hostTscKhz, kernelCmdline, qemuCommand, type VmConfig } from "./qemu.js";

const base: VmConfig = {
  arch: "amd64",
  machine: "microvm",
  accel: "tcg",
  kernel: "/k/vmlinuz",
  initrd: "/t/initrd",
  memMiB: 256,
  cpus: 1,
  forwards: [parsePortForward("8080:80")],
  qmpSocket: "/t/qmp.sock",
  tscKhz: 2596138,
};

test("host TSC rate from /proc/cpuinfo, only when it is constant", () => {
  const info = (flags: string) => `processor\t: 0\ncpu MHz\t\t: 2596.138\nflags\t\t: fpu ${flags} sse\n`;
  assert.equal(hostTscKhz({}, info("constant_tsc nonstop_tsc")), 2596138);
  assert.equal(hostTscKhz({}, info("tsc")), undefined);
  assert.equal(hostTscKhz({ SLIMROOT_TSC_KHZ: "1000000" }, ""), 1000000);
  assert.throws(() => hostTscKhz({ SLIMROOT_TSC_KHZ: "fast" }, ""));
});

test("machine and accelerator choices", () => {
  assert.equal(chooseMachine("amd64", "tcg", 2596138, {}), "microvm");
  assert.equal(chooseMachine("amd64", "tcg", undefined, {}), "pc");
  assert.equal(chooseMachine("amd64", "tcg", 2596138, { SLIMROOT_MACHINE: "pc" }), "pc");
  assert.equal(chooseMachine("arm64", "tcg", undefined, {}), "virt");
  assert.equal(chooseAccel("amd64", {}), "tcg");
  assert.throws(() => chooseAccel("amd64", { SLIMROOT_ACCEL: "hvf" }));
  assert.throws(() => chooseAccel(process.arch === "arm64" ? "amd64" : "arm64", { SLIMROOT_ACCEL: "kvm" }));
});

test("kernel command lines", () => {
  assert.equal(
    kernelCmdline(base),
    "console=ttyS0 reboot=t panic=-1 quiet tsc_early_khz=2596138 tsc=reliable noreplace-smp 8250.nr_uarts=1",
  );
  // Without ACPI (slimroot's kernel) the kernel ticks from the PIT: no APIC timer to calibrate.
  assert.equal(
    kernelCmdline({ ...base, acpi: false }),
    "console=ttyS0 reboot=t panic=-1 quiet pci=off tsc_early_khz=2596138 tsc=reliable noapictimer no_timer_check noreplace-smp 8250.nr_uarts=1",
  );
  assert.equal(
    kernelCmdline({ ...base, machine: "pc" }),
    "console=ttyS0 reboot=t panic=-1 quiet noreplace-smp 8250.nr_uarts=1",
  );
  assert.equal(kernelCmdline({ ...base, arch: "arm64", machine: "virt" }), "console=ttyAMA0 panic=-1 quiet");
});

test("QEMU command lines per machine", () => {
  const micro = qemuCommand(base);
  assert.equal(micro[0], "qemu-system-x86_64");
  for (const a of [
    "-nodefaults",
    "-no-reboot",
    "virtio-net-device,netdev=n0",
    "virtio-keyboard-device,id=kbd",
  ]) {
    assert.ok(micro.includes(a), a);
  }
  assert.ok(micro.includes("user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80"));
  assert.deepEqual(micro.slice(micro.indexOf("-accel"), micro.indexOf("-accel") + 2), ["-accel", "tcg"]);
  const pc = qemuCommand({ ...base, machine: "pc" });
  assert.ok(pc.includes("virtio-net-pci,netdev=n0"));
  assert.ok(!pc.some((a) => a.startsWith("virtio-keyboard")));
  const virt = qemuCommand({ ...base, arch: "arm64", machine: "virt" });
  assert.equal(virt[0], "qemu-system-aarch64");
  assert.ok(virt.includes("cortex-a57"));
});

test("a kernel with command-line devices: microvm without ACPI; the plan's command line as given", () => {
  const withAcpi = qemuCommand(base);
  assert.ok(withAcpi.includes("microvm,acpi=on"));
  assert.ok(withAcpi.includes("-initrd"));
  const noAcpi = qemuCommand({ ...base, acpi: false, cmdline: "console=ttyS0 x=1" });
  assert.ok(noAcpi.includes("microvm,acpi=off"));
  assert.equal(noAcpi[noAcpi.indexOf("-append") + 1], "console=ttyS0 x=1");
});

test("shell quoting", () => {
  assert.equal(shellQuote(["a", "b c", "it's", "-append", "x=1,y"]), `a 'b c' 'it'\\''s' -append x=1,y`);
});
