/**
 * What bench can measure, as tables: a new output format or kernel is one more row here, and
 * every variant is a product of the chosen rows. Each row says how to ask the slimroot CLI for
 * it, so bench measures exactly what a user would run.
 */
import { UserError } from "../util/errors.js";

export interface LevelRow {
  /** `build --minimize`. */
  minimize: string;
  /** Needs a profile from `slimroot trace` (bench records one first). */
  traced?: boolean;
}

export const LEVELS: Readonly<Record<string, LevelRow>> = {
  none: { minimize: "none" },
  safe: { minimize: "safe" },
  static: { minimize: "static" },
  trace: { minimize: "trace", traced: true },
};

export interface FormatRow {
  /** Output file suffix; `build` picks format and compression from it. */
  suffix: string;
  /** Extra `build` arguments. */
  build: string[];
  /** The output is a compressed archive whose raw size is worth reporting apart. */
  compressed: boolean;
  /** Booted as one file: the image built into the kernel (`kernel build --embed`). */
  embed?: boolean;
}

export const FORMATS: Readonly<Record<string, FormatRow>> = {
  cpio: { suffix: ".cpio.gz", build: ["--compress", "gzip"], compressed: true },
  "cpio-xz": { suffix: ".cpio.xz", build: ["--compress", "xz"], compressed: true },
  "cpio-zstd": { suffix: ".cpio.zst", build: ["--compress", "zstd"], compressed: true },
  ext4: { suffix: ".ext4", build: ["--format", "ext4"], compressed: false },
  erofs: { suffix: ".erofs", build: ["--format", "erofs"], compressed: false },
  squashfs: { suffix: ".sqfs", build: ["--format", "squashfs"], compressed: false },
  embedded: { suffix: ".cpio.xz", build: ["--compress", "xz"], compressed: true, embed: true },
};

export interface KernelRow {
  label: string;
  /** The slimroot command that prints the kernel directory (cached after the first time). */
  command: string[];
}

export const KERNELS: Readonly<Record<string, KernelRow>> = {
  debian: { label: "Debian's cloud kernel (modular virtio)", command: ["kernel", "fetch"] },
  slimroot: { label: "slimroot's microVM kernel (all built in)", command: ["kernel", "build"] },
};

export interface Variant {
  id: string;
  level: string;
  format: string;
  kernel: string;
}

/** "a,b" -> the rows of `table`, refusing unknown names with the list of known ones. */
export function pick(flag: string, text: string, table: Readonly<Record<string, unknown>>): string[] {
  const names = text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (names.length === 0)
    throw new UserError(`${flag}: give at least one of ${Object.keys(table).join(", ")}`);
  for (const n of names) {
    if (!(n in table)) throw new UserError(`${flag} ${n}: unknown; one of ${Object.keys(table).join(", ")}`);
  }
  return [...new Set(names)];
}

export function variants(levels: string[], formats: string[], kernels: string[]): Variant[] {
  const out: Variant[] = [];
  for (const kernel of kernels)
    for (const format of formats)
      for (const level of levels) out.push({ id: `${level}/${format}/${kernel}`, level, format, kernel });
  return out;
}
