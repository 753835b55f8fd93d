/**
 * bench's timeline columns: one boot's timeline (vm/timeline.ts, as `run --timeline` built it)
 * cut into the phases a reader compares across variants, with bench's own two ends added: when
 * it started `slimroot run` and when the first probe passed. Pure.
 */
import type { SegmentId, Timeline } from "../vm/timeline.js";
import type { BootPhases } from "./schema.js";

/** The phases in boot order, and the timeline segments each one is made of. */
export const PHASES: readonly { name: string; segments: readonly SegmentId[] }[] = [
  { name: "run", segments: [] },
  { name: "kernel", segments: ["setup", "decompress", "early"] },
  { name: "initcalls", segments: ["initcalls"] },
  { name: "root ready", segments: ["to-init"] },
  { name: "init", segments: ["init"] },
  { name: "app to probe", segments: [] },
];

/**
 * `startEpochMs`: bench started `slimroot run`; `readyEpochMs`: its probes passed (host wall
 * clock, as the timeline's vmmStartEpochMs). "run" is slimroot run's own start, until the
 * VMM; "app to probe" the rest, from the app's exec to the probe. The phases sum to the ready time.
 */
export function bootPhases(tl: Timeline, startEpochMs: number, readyEpochMs: number, top = 5): BootPhases {
  if (tl.vmmStartEpochMs === undefined) throw new Error("the timeline has no VMM start time");
  const vmmMs = tl.vmmStartEpochMs - startEpochMs;
  const readyMs = readyEpochMs - startEpochMs;
  const sum = (ids: readonly SegmentId[]) =>
    tl.segments.filter((s) => ids.includes(s.id)).reduce((n, s) => n + s.ms, 0);
  const phases = PHASES.map((p) => ({ name: p.name, ms: p.name === "run" ? vmmMs : sum(p.segments) }));
  const last = phases.at(-1)!;
  // Never negative: a probe that passed before the init's "app" mark (its clock is the guest's) is 0.
  last.ms = Math.max(0, readyMs - phases.slice(0, -1).reduce((n, p) => n + p.ms, 0));
  return { phases, readyMs, slowestInitcalls: tl.initcalls.slice(0, top) };
}
