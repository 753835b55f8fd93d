import { UserError } from "../util/errors.js";

/** Commander's accumulator for repeatable options. */
export const collect = (value: string, previous: string[] = []) => [...previous, value];

/** `500ms`, `30`, `30s`, `2m`, `1h` -> milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new UserError(`${flag} ${text}: expected a duration such as 30s, 2m or 500ms`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "s") as "ms" | "s" | "m" | "h"];
  return Math.round(Number(m[1]) * unit);
}

/** A whole number from 1 to `max`. */
export function positiveInt(text: string, flag: string, max: number): number {
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= 1 && n <= max)) throw new UserError(`${flag} ${text}: expected a whole number from 1 to ${max}`);
  return n;
}
