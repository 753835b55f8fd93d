import { accessSync, constants } from "node:fs";
import { join } from "node:path";

/** The host program `name` as the shell would find it on $PATH, or undefined. */
export function hostExecutable(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env.PATH ?? "/usr/local/bin:/usr/bin:/bin").split(":")) {
    const file = join(dir || ".", name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}
