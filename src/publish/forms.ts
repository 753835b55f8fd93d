/** The consumer forms `push --as` writes, one row each (consumer.ts says what a form is). */
import { UserError } from "../util/errors.js";
import type { ConsumerForm } from "./consumer.js";
import { containerdisk } from "./containerdisk.js";
import { flintlock } from "./flintlock.js";
import { urunc } from "./urunc.js";

export const FORMS: Record<string, ConsumerForm> = {
  urunc,
  flintlock,
  containerdisk,
};

/** slimroot's own form: the tag itself; every other form: TAG-name. */
export const SLIMROOT_FORM = "slimroot";

/** The forms named by --as (repeatable, or a comma list), each once, in the order given. */
export function parseForms(values: string[]): string[] {
  const names = values.flatMap((v) => v.split(",")).map((v) => v.trim());
  const known = [SLIMROOT_FORM, ...Object.keys(FORMS)];
  for (const n of names)
    if (!known.includes(n))
      throw new UserError(`--as ${n}: not a form slimroot writes (${known.join(", ")})`);
  return [...new Set(names)];
}
