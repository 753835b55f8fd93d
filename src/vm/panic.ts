/**
 * Why a VM ended without the init's report, from what its console showed, in one line that
 * says what failed. The kernel's own line is often no help: a built-in initramfs that does not
 * fit in the guest's RAM ends in `Kernel panic - not syncing:` with an empty reason (or the
 * unpacker's bare "write error", or "System is deadlocked on memory"), and with less still the
 * kernel stops before its first line and QEMU just exits.
 */
import type { BootPlan } from "./plan.js";

/** The unpacker's and the allocator's panics, and the empty one: the image did not fit. */
const OUT_OF_MEMORY =
  /^Kernel panic - not syncing: *(write error|decompressor failed|can't allocate buffers|Out of memory.*|System is deadlocked on memory.*|)$/;

/** The last `Kernel panic - not syncing:` line in `console`, trimmed. */
export function panicLine(console: string): string | undefined {
  const all = [...console.matchAll(/Kernel panic - not syncing:[^\n]*/g)];
  // The kernel may close with "---[ end Kernel panic - not syncing: ... ]---": the same reason.
  return all
    .at(-1)?.[0]
    .replace(/\s*\]---\s*$/, "")
    .trim();
}

/** What to give instead of the plan's memory. */
function advice(plan: BootPlan): string {
  const { mib, sizedMiB } = plan.memory;
  return mib < sizedMiB
    ? `give --mem ${sizedMiB} (or leave --mem out)`
    : `give --mem ${Math.ceil((mib * 2) / 32) * 32}`;
}

/**
 * The reason, or undefined when the console says nothing useful (the caller then says what
 * the VMM said). `console`: the end of the guest console; `printed`: whether it printed at all.
 */
export function failureReason(console: string, printed: boolean, plan: BootPlan): string | undefined {
  const panic = panicLine(console);
  const inRam = plan.initrd.some((p) => p.kind === "image") || plan.kernel.embedded;
  if (panic !== undefined) {
    if (!inRam || !OUT_OF_MEMORY.test(panic)) return panic;
    const what = plan.kernel.embedded ? "the built-in initramfs" : "the initramfs";
    return `${what} did not fit in ${plan.memory.mib} MiB of guest memory (${panic}); ${advice(plan)}`;
  }
  // Below its need a kernel may end before its first console line (QEMU then simply exits).
  if (!printed && plan.memory.mib < plan.memory.sizedMiB)
    return `the kernel stopped before its first console line in ${plan.memory.mib} MiB of guest memory, less than the ${plan.memory.sizedMiB} MiB sized from the image; ${advice(plan)}`;
  return undefined;
}
