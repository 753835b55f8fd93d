/**
 * The kernel's configuration: slimroot's fragments (src/kernel/config/), the user's (checked
 * by fragment.ts), the merge into a tinyconfig and the checks of the result.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Arch } from "../arch/arch.js";
import { PACKAGE_ROOT } from "../guest/init-binary.js";
import { UserError } from "../util/errors.js";
import { checkFragment, ownedInConfig, readFragment } from "./fragment.js";
import { runLogged } from "./make.js";
import { lockedOptions } from "./requirements.js";

/** slimroot's fragments: the common one, then the architecture's. */
const CONFIG_DIR = join(PACKAGE_ROOT, "src", "kernel", "config");
export const fragmentFiles = (arch: Arch) => [
  join(CONFIG_DIR, "microvm.config"),
  join(CONFIG_DIR, `microvm-${arch}.config`),
];

/** One `NAME=value` or `# NAME is not set` line of a config or fragment. */
export interface ConfigSetting {
  name: string;
  /** "n" for `is not set`. */
  value: string;
}

export function parseConfig(text: string): ConfigSetting[] {
  const out: ConfigSetting[] = [];
  for (const line of text.split("\n")) {
    const set = /^(CONFIG_\w+)=(.*)$/.exec(line.trim());
    if (set) out.push({ name: set[1]!, value: set[2]! });
    const unset = /^# (CONFIG_\w+) is not set$/.exec(line.trim());
    if (unset) out.push({ name: unset[1]!, value: "n" });
  }
  return out;
}

/** The settings of `fragment` that `config` (a resulting .config) does not have. */
export function missingSettings(fragment: readonly ConfigSetting[], config: string): ConfigSetting[] {
  const have = new Map(parseConfig(config).map((s) => [s.name, s.value]));
  return fragment.filter((s) => (have.get(s.name) ?? "n") !== s.value);
}

/** A user's fragment, checked (fragment.ts) and kept with its name for messages. */
export interface UserFragment {
  file: string;
  text: string;
  settings: ConfigSetting[];
}

/** The user's fragments, each read and checked (fragment.ts) before anything runs. */
export async function readUserFragments(files: readonly string[], arch: Arch): Promise<UserFragment[]> {
  const theirs: UserFragment[] = [];
  for (const file of files) {
    const text = await readFragment(file);
    theirs.push({ file, text, settings: checkFragment(file, text, arch) });
  }
  return theirs;
}

/**
 * Configures the object tree: tinyconfig, then our fragments and the user's merged with the
 * kernel's own scripts/kconfig/merge_config.sh (later ones win), then olddefconfig; then checks
 * the result against the table of kernel requirements and the options that are slimroot's.
 * Returns the .config's path.
 */
export async function configure(
  o: { arch: Arch; source?: string; progress?: (phase: string, percent?: number) => void },
  tree: string,
  at: { obj: string; work: string; log: string },
  make: (args: string[]) => Promise<void>,
  ours: readonly string[],
  theirs: readonly UserFragment[],
): Promise<string> {
  const progress = o.progress ?? (() => {});
  const { obj, work, log } = at;
  await make(["tinyconfig"]);
  const dotConfig = join(obj, ".config");
  // The kernel's own merge: later fragments win, and it says which values they redefine.
  const frags = join(work, "fragments");
  await mkdir(frags);
  const texts = [...ours, ...theirs.map((f) => f.text)];
  const files = texts.map((_, i) => join(frags, `${i}.config`));
  await Promise.all(files.map((f, i) => writeFile(f, texts[i]!)));
  await runLogged(
    "sh",
    [join(tree, "scripts", "kconfig", "merge_config.sh"), "-m", "-O", obj, dotConfig, ...files],
    { cwd: work, log },
  );
  await make(["olddefconfig"]);
  const config = await readFile(dotConfig, "utf8");
  // kconfig drops what a dependency rules out without a word: check the table of kernel
  // requirements (a user's fragment may turn off anything else of slimroot's defaults).
  const required = [...lockedOptions(o.arch).keys()].map((name) => ({ name, value: "y" }));
  const lost = missingSettings(required, config);
  if (lost.length) {
    const by = theirs.length ? "the config fragment turns off" : "the configuration lost";
    throw new UserError(
      `${theirs.map((f) => f.file).join(", ") || "kernel config"}: ${by} what slimroot needs: ${lost
        .map((s) => `${s.name}=${s.value}`)
        .join(" ")}`,
    );
  }
  // A --source tree's Kconfig could default what a fragment may not set.
  const owned = ownedInConfig(config);
  if (owned.length)
    throw new UserError(`${o.source ?? tree}: its configuration sets what is slimroot's: ${owned.join(" ")}`);
  const ignored = missingSettings(
    theirs.flatMap((f) => f.settings),
    config,
  );
  if (ignored.length)
    progress(
      `note: kconfig did not take ${ignored.map((s) => `${s.name}=${s.value}`).join(" ")} (dependencies)`,
    );
  return dotConfig;
}
