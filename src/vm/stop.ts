import { KEYBOARD_ID, type Machine } from "./qemu.js";
import { Qmp } from "./qmp.js";

const CTRL_ALT_DEL = ["ctrl", "alt", "delete"].map((k) => ({ type: "qcode", data: k }));

/**
 * Asks the guest to stop its app: Ctrl-Alt-Del on the VM's keyboard. The init has turned
 * off the kernel's Ctrl-Alt-Del reboot (reboot(CAD_OFF)), so the kernel sends PID 1 a SIGINT
 * instead, which the init forwards to the app. The host has no other way to signal a
 * process in the guest: an ACPI power button or the arm64 GPIO power key only raise input
 * events nobody listens to, and the serial line can carry no signal to a process that has
 * it without a controlling terminal.
 *
 * On microvm and virt the keyboard is virtio-input, usable only once the init has loaded
 * its driver; a key pressed earlier is lost, so we wait for the guest driver to accept the
 * device and given it buffers (QEMU's x-query-virtio-queue-element) before pressing. pc's PS/2 keyboard
 * works from the start (a press before the init runs just reboots, which ends the VM too).
 */
export async function pressCtrlAltDel(
  qmpSocket: string,
  machine: Machine,
  deadline: number,
  stopped: () => boolean,
): Promise<void> {
  const qmp = await Qmp.connect(qmpSocket, Math.max(0, deadline - Date.now()));
  try {
    if (machine !== "pc") await waitForKeyboard(qmp, `/machine/peripheral/${KEYBOARD_ID}`, deadline, stopped);
    if (!stopped()) await qmp.execute("send-key", { keys: CTRL_ALT_DEL });
  } finally {
    qmp.close();
  }
}

/**
 * Waits until the guest's virtio-input driver has posted buffers on the event queue: it does
 * so only after registering the input device, which attaches the kernel's keyboard handler.
 * Until then QEMU drops key events (DRIVER_OK alone comes a moment too early).
 */
async function waitForKeyboard(
  qmp: Qmp,
  path: string,
  deadline: number,
  stopped: () => boolean,
): Promise<void> {
  while (!stopped() && Date.now() < deadline) {
    try {
      const head = (await qmp.execute("x-query-virtio-queue-element", { path, queue: 0 })) as {
        avail?: { idx?: number };
        used?: { idx?: number };
      };
      const posted = ((head.avail?.idx ?? 0) - (head.used?.idx ?? 0) + 0x10000) % 0x10000;
      if (posted > 0) return;
    } catch (err) {
      // An experimental (x-) command: without it, press now and hope the driver is there.
      if (/CommandNotFound|has not been found|not found/i.test((err as Error).message)) return;
      // Otherwise ("Region caches not initialized"): the driver has not set the queue up yet.
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
