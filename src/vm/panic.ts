/**
 * A kernel panic on the console, in one line that says what failed. The kernel's own line is
 * often no help: a built-in initramfs that does not fit in the guest's RAM ends in
 * `Kernel panic - not syncing:` with an empty reason (or the unpacker's bare "write error").
 */
import type { BootPlan } from "./plan.js";

/** The unpacker's and the allocator's panics, and the empty one: the image did not fit. */
const OUT_OF_MEMORY =
  /^Kernel panic - not syncing: *(write error|decompressor failed|can't allocate buffers|Out of memory.*|System is deadlocked on memory.*|)\s*$/;

/** `panic`: the `Kernel panic - not syncing: ...` line seen on the console. */
export function panicReason(panic: string, plan: BootPlan): string {
  const inRam = plan.initrd.some((p) => p.kind === "image") || plan.kernel.embedded;
  if (!inRam || !OUT_OF_MEMORY.test(panic.trim())) return panic.trim();
  const what = plan.kernel.embedded ? "the built-in initramfs" : "the initramfs";
  const more = Math.ceil((plan.memory.mib * 2) / 32) * 32;
  return `${what} did not fit in ${plan.memory.mib} MiB of guest memory (${panic.trim()}); give --mem ${more}`;
}
