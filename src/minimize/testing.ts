/** Test support: small image trees for the minimizer's tests. */
import { resolveAppConfig } from "../appconfig/appconfig.js";
import { bufferContent } from "../tree/spool.js";
import { Tree } from "../tree/tree.js";
import { treeClosureResolver } from "./closure.js";
import { minimize, type TracedProfile } from "./minimize.js";

/** A tree from path -> file body, symlink or directory (parents made as needed). */
export function tree(spec: Record<string, string | { link: string } | "dir">): Tree {
  const t = new Tree();
  for (const [path, what] of Object.entries(spec)) {
    if (what === "dir") {
      t.ensureDir(path, 0);
      continue;
    }
    t.ensureDir(path.split("/").slice(0, -1).join("/"), 0);
    t.set(path, {
      inode:
        typeof what === "string"
          ? { kind: "file", mode: 0o755, uid: 0, gid: 0, mtime: 0, content: bufferContent(Buffer.from(what)) }
          : { kind: "symlink", mode: 0o777, uid: 0, gid: 0, mtime: 0, target: what.link },
      layer: 0,
    });
  }
  return t;
}

/** `--minimize trace` of `t` (entrypoint /usr/bin/app) with `profile`: why each path stayed. */
export async function minimizeTraced(t: Tree, profile: TracedProfile): Promise<Map<string, string>> {
  const app = resolveAppConfig({ entrypoint: ["/usr/bin/app"] }, {}, {});
  const { reasons } = await minimize(t, {
    level: "trace",
    app,
    closure: treeClosureResolver(t, "amd64", app.env),
    profile,
    added: [],
    keep: [],
    drop: [],
    epoch: 0,
  });
  return reasons;
}
