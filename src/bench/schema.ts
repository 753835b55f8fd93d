/**
 * The JSON `bench --json` writes: version 1. Types for the code and a JSON Schema for
 * everyone else (docs/bench.md describes each field); both change together, with the id.
 */
import type { Stats } from "./boot.js";

export const BENCH_SCHEMA_ID = "https://slimroot.dev/schema/bench/v1";

export interface BenchRow {
  /** level/format/kernel, or "hand-made ROUTE/kernel". */
  id: string;
  kind: "slimroot" | "conventional";
  level: string;
  format: string;
  kernel: string;
  /** The file booted, and its content before compression (the same for disks). */
  bytes: { file: number; raw: number } | null;
  buildSeconds: number | null;
  /** VMM start (`slimroot run`, or QEMU for the hand-made routes) to every probe passed. */
  ready: Stats | null;
  /** ready.median / the floor's median on the same kernel and VMM. */
  readyToFloor: number | null;
  /** Least guest RAM with which the probes still passed (bisected, each step a boot). */
  leastMiB: number | null;
  /** The hand-made routes: how the baseline was sized (its disk, its guest memory). */
  sizing?: string;
  /** bench --timeline: one more boot of a slimroot row with `run --timeline`, cut into phases (phases.ts). */
  timeline?: BootPhases;
  /** bench --resume: a slimroot row's snapshot, resumed as often as it was booted. */
  resume?: ResumeResult;
  error?: string;
}

/**
 * `slimroot snapshot` of the row's file once its app was ready, then `slimroot run APP.snap`
 * timed as a cold boot is (from starting slimroot run to every probe passed).
 */
export interface ResumeResult {
  /** The snapshot's bytes on disk: its state file and its RAM file's allocated blocks. */
  bytes: number | null;
  ready: Stats | null;
  /** ready.median / the same row's cold ready.median, in the same run. */
  toCold: number | null;
  /** `run APP.snap --standby`, timed from the signal that resumes it to every probe passed. */
  standby: Stats | null;
  /** standby.median / the same row's cold ready.median. */
  standbyToCold: number | null;
  error?: string;
}

export interface BootPhases {
  /** In boot order: run, kernel, initcalls, root ready, init, app to probe; ms, summing to readyMs. */
  phases: { name: string; ms: number }[];
  /** That boot's ready time (ms from starting `slimroot run` to every probe passed). */
  readyMs: number;
  /** The kernel's slowest initcalls in that boot (initcall_debug), slowest first. */
  slowestInitcalls: { name: string; ms: number }[];
}

export interface Comparison {
  metric: "bytes" | "ready" | "ram" | "build";
  /** The best slimroot row for this metric on the baseline's kernel. */
  row: string;
  against: string;
  value: number;
  baseline: number;
  /** value / baseline. */
  ratio: number;
  /** The ratio the project aims for (at most). */
  goal: number;
  met: boolean;
}

export interface BenchReport {
  schema: typeof BENCH_SCHEMA_ID;
  date: string;
  host: {
    cpus: number;
    cpuModel: string;
    memGiB: number;
    os: string;
    node: string;
    qemu: string;
    accel: string;
  };
  source: string;
  probes: string[];
  runs: number;
  memMiB: number | null;
  /** The traced level: seconds `slimroot trace` took to record the profile (once, shared by the trace rows, whose buildSeconds leave it out); absent without it. */
  traceSeconds?: number;
  floors: ({ kernel: string; seconds: Stats } | { kernel: string; error: string })[];
  rows: BenchRow[];
  comparisons: Comparison[];
}

const num = { type: "number", minimum: 0 };
const named = {
  type: "object",
  additionalProperties: false,
  required: ["name", "ms"],
  properties: { name: { type: "string" }, ms: num },
};
const nullable = (s: object) => ({ anyOf: [s, { type: "null" }] });
const stats = {
  type: "object",
  required: ["min", "median", "max", "runs"],
  additionalProperties: false,
  properties: { min: num, median: num, max: num, runs: { type: "array", items: num, minItems: 1 } },
};

export const BENCH_JSON_SCHEMA = {
  $schema: "http://json-schema.org/draft-07/schema#",
  $id: BENCH_SCHEMA_ID,
  type: "object",
  additionalProperties: false,
  required: ["schema", "date", "host", "source", "probes", "runs", "memMiB", "floors", "rows", "comparisons"],
  properties: {
    schema: { const: BENCH_SCHEMA_ID },
    date: { type: "string" },
    host: {
      type: "object",
      additionalProperties: false,
      required: ["cpus", "cpuModel", "memGiB", "os", "node", "qemu", "accel"],
      properties: {
        cpus: { type: "integer", minimum: 1 },
        cpuModel: { type: "string" },
        memGiB: num,
        os: { type: "string" },
        node: { type: "string" },
        qemu: { type: "string" },
        accel: { enum: ["tcg", "kvm"] },
      },
    },
    source: { type: "string" },
    probes: { type: "array", items: { type: "string" } },
    runs: { type: "integer", minimum: 1 },
    memMiB: nullable({ type: "integer", minimum: 1 }),
    traceSeconds: num,
    floors: {
      type: "array",
      items: {
        oneOf: [
          {
            type: "object",
            additionalProperties: false,
            required: ["kernel", "seconds"],
            properties: { kernel: { type: "string" }, seconds: stats },
          },
          {
            type: "object",
            additionalProperties: false,
            required: ["kernel", "error"],
            properties: { kernel: { type: "string" }, error: { type: "string" } },
          },
        ],
      },
    },
    rows: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: [
          "id",
          "kind",
          "level",
          "format",
          "kernel",
          "bytes",
          "buildSeconds",
          "ready",
          "readyToFloor",
          "leastMiB",
        ],
        properties: {
          id: { type: "string" },
          kind: { enum: ["slimroot", "conventional"] },
          level: { type: "string" },
          format: { type: "string" },
          kernel: { type: "string" },
          bytes: nullable({
            type: "object",
            additionalProperties: false,
            required: ["file", "raw"],
            properties: { file: { type: "integer", minimum: 0 }, raw: { type: "integer", minimum: 0 } },
          }),
          buildSeconds: nullable(num),
          ready: nullable(stats),
          readyToFloor: nullable(num),
          leastMiB: nullable({ type: "integer", minimum: 1 }),
          sizing: { type: "string" },
          timeline: {
            type: "object",
            additionalProperties: false,
            required: ["phases", "readyMs", "slowestInitcalls"],
            properties: {
              phases: { type: "array", items: named },
              readyMs: num,
              slowestInitcalls: { type: "array", items: named },
            },
          },
          resume: {
            type: "object",
            additionalProperties: false,
            required: ["bytes", "ready", "toCold", "standby", "standbyToCold"],
            properties: {
              bytes: nullable({ type: "integer", minimum: 0 }),
              ready: nullable(stats),
              toCold: nullable(num),
              standby: nullable(stats),
              standbyToCold: nullable(num),
              error: { type: "string" },
            },
          },
          error: { type: "string" },
        },
      },
    },
    comparisons: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["metric", "row", "against", "value", "baseline", "ratio", "goal", "met"],
        properties: {
          metric: { enum: ["bytes", "ready", "ram", "build"] },
          row: { type: "string" },
          against: { type: "string" },
          value: num,
          baseline: num,
          ratio: num,
          goal: num,
          met: { type: "boolean" },
        },
      },
    },
  },
} as const;
