import { escapeConfValue, unescapeConfValue } from "../appconfig/appconfig.js";
import type { TracedProfile } from "../minimize/minimize.js";
import { UserError } from "../util/errors.js";
import { readInputText } from "../util/input-file.js";

/**
 * A trace profile: a text file, one absolute image path per line, after a header of
 * `# key: value` lines naming the image digest, the probes and the date. In paths, `\\`
 * stands for a backslash and `\n` for a newline (as in app.conf). With the syscall recorder
 * (header `recorder`), `L /dir` is a directory the app listed and `? /path` a path it looked
 * up that the image does not have.
 */
export interface Profile extends TracedProfile {
  header: ProfileHeader;
}

/** The header keys, the one list of them: what `slimroot trace` writes and readers look up. */
export interface ProfileHeader {
  /** The source reference traced. */
  image?: string;
  /** Its manifest digest, when it has one. */
  digest?: string;
  /** The app's argv, as JSON. */
  command?: string;
  /** The probes, as a JSON array of their specs. */
  probes?: string;
  date?: string;
  kernel?: string;
  arch?: string;
  "exit status"?: string;
  /** Why the trace may be incomplete. */
  truncated?: string;
  /** "syscalls" when the init recorded lookups and listings too, not only opens (init/record.c). */
  recorder?: string;
}

/** The header value of a profile whose lookups were recorded. */
export const RECORDER = "syscalls";

export function encodeProfile(p: Profile): string {
  const head = Object.entries(p.header).map(([k, v]) => `# ${k}: ${v.replace(/\n/g, " ")}`);
  const lines = (prefix: string, list: readonly string[] = []) =>
    [...new Set(list)].sort().map((x) => `${prefix}/${escapeConfValue(x.replace(/^\/+/, ""), "path")}`);
  return `${["# slimroot profile v1", ...head, ...lines("", p.paths), ...lines("L ", p.listed), ...lines("? ", p.missing)].join("\n")}\n`;
}

export function decodeProfile(text: string, file: string): Profile {
  const lines = text.split("\n");
  if (lines[0] !== "# slimroot profile v1")
    throw new UserError(`${file}: not a slimroot profile (first line must be "# slimroot profile v1")`);
  const header: Record<string, string> = {};
  const paths: string[] = [];
  const listed: string[] = [];
  const missing: string[] = [];
  for (const [i, line] of lines.entries()) {
    if (i === 0 || line === "") continue;
    if (line.startsWith("#")) {
      const m = /^# ([^:]+): (.*)$/.exec(line);
      if (m) header[m[1]!] = m[2]!;
    } else if (line.startsWith("/")) paths.push(unescapeConfValue(line.replace(/^\/+/, "")));
    else if (line.startsWith("L /")) listed.push(unescapeConfValue(line.slice(2).replace(/^\/+/, "")));
    else if (line.startsWith("? /")) missing.push(`/${unescapeConfValue(line.slice(2).replace(/^\/+/, ""))}`);
    else
      throw new UserError(
        `${file}:${i + 1}: expected an absolute path (or "? /path", "L /dir"), got ${JSON.stringify(line.slice(0, 80))}`,
      );
  }
  return { header: header as ProfileHeader, paths, listed, missing, lookups: header.recorder === RECORDER };
}

/** A profile file, header and paths. */
export async function loadProfile(file: string): Promise<Profile> {
  return decodeProfile(await readInputText(file), file);
}

/** The paths of a profile file. */
export async function readProfile(file: string): Promise<string[]> {
  return (await loadProfile(file)).paths;
}

/**
 * The probe specs `slimroot trace` recorded in the header (a JSON array), if any. A profile
 * is data people share: its probes may only talk to the guest (http:, tcp:); an exec: probe
 * would run a command on this host, so it is refused unless the user said `allowExec`
 * (`--allow-profile-exec`) for this file.
 */
export function profileProbes(p: Profile, file: string, allowExec = false): string[] {
  const text = p.header.probes;
  if (text === undefined) return [];
  let specs: unknown;
  try {
    specs = JSON.parse(text);
  } catch {
    specs = undefined;
  }
  if (!Array.isArray(specs) || !specs.every((s) => typeof s === "string"))
    throw new UserError(`${file}: the probes header is not a JSON array of strings`);
  const local = allowExec ? undefined : specs.find((s) => !/^(http|tcp):/.test(s));
  if (local !== undefined)
    throw new UserError(
      `${file}: refusing the profile's probe ${JSON.stringify(local.slice(0, 80))}: probes from a profile are limited to http: and tcp: (an exec: probe runs on this host: give --allow-profile-exec to allow it, or --probe to replace the profile's probes)`,
    );
  return specs;
}

/** A warning when the profile was recorded for another command than the one being built. */
export function profileCommandMismatch(
  p: Profile,
  file: string,
  args: readonly string[],
): string | undefined {
  const recorded = p.header.command;
  if (recorded === undefined || recorded === JSON.stringify(args)) return undefined;
  return `${file} was recorded for ${recorded}, this image runs ${JSON.stringify(args)}: trace it again if that reads other files`;
}

/** A warning when the profile was made for another image (by digest) than the one being built. */
export function profileDigestMismatch(
  p: Profile,
  file: string,
  digest: string | undefined,
): string | undefined {
  const made = p.header.digest;
  if (made === undefined || digest === undefined || made === digest) return undefined;
  return `${file} was made for image ${made}, this image is ${digest}: trace it again if its files moved`;
}

/**
 * Several traces of one app as one profile (`build --profile a --profile b`, `trace --merge`):
 * every path used, directory listed and failed lookup of any, the probes of all (in order,
 * once each). The header is the first's; its lookups count as recorded only when every
 * trace recorded them (else fanotify's rules must run for the others' paths).
 */
export function mergeProfiles(profiles: readonly Profile[]): Profile {
  const [first, ...rest] = profiles;
  if (!first) throw new Error("mergeProfiles: no profile");
  if (rest.length === 0) return first;
  const union = (pick: (p: Profile) => readonly string[] | undefined) => [
    ...new Set(profiles.flatMap((p) => pick(p) ?? [])),
  ];
  const probes = union((p) => {
    try {
      const specs: unknown = JSON.parse(p.header.probes ?? "[]");
      return Array.isArray(specs) ? specs.map(String) : [];
    } catch {
      return [];
    }
  });
  const lookups = profiles.every((p) => p.lookups);
  const used = new Set(union((p) => p.paths).map((x) => `/${x}`));
  const header: ProfileHeader = { ...first.header, probes: JSON.stringify(probes) };
  if (!lookups) delete header.recorder;
  return {
    header,
    paths: union((p) => p.paths),
    listed: union((p) => p.listed),
    // A path one trace found (another run made it first, say) is no failed lookup.
    missing: union((p) => p.missing).filter((m) => !used.has(m)),
    lookups,
  };
}
