import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

const executable = (file: string): boolean => {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/** The host program `name` as the shell would find it (on $PATH unless it has a `/`), or undefined. */
export function hostExecutable(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (name.includes("/")) return executable(name) ? name : undefined;
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    // an empty element would mean the working directory: not for host tools
    if (dir && executable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}
