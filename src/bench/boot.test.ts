import assert from "node:assert/strict";
import { test } from "node:test";
import { lastLine } from "./boot.js";

test("a failed boot is told by the init's last line and its exit report, not the kernel's reboot line", () => {
  const key = "ab".repeat(16);
  // A whole redis image in too little RAM, as the console showed it.
  const console = [
    "[    1.008576] PCI: Fatal: No config space access function found",
    "[   10.854077] Initramfs unpacking failed: write error",
    "slimroot-init: /etc/hosts: no space left\r",
    `SLIMROOT_REPORT ${key}`,
    "SLIMROOT_EXIT=125",
    "[   14.198445] reboot: Restarting system",
    "",
  ].join("\n");
  assert.equal(lastLine(console, key), "slimroot-init: /etc/hosts: no space left; SLIMROOT_EXIT=125");
  assert.equal(lastLine("[    1.9] reboot: Restarting system\n"), "[    1.9] reboot: Restarting system");
  assert.equal(lastLine(""), "no output");
});
