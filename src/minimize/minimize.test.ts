import assert from "node:assert/strict";
import { test } from "node:test";
import { resolveAppConfig } from "../appconfig/appconfig.js";
import { bufferContent } from "../tree/spool.js";
import { Tree } from "../tree/tree.js";
import { treeClosureResolver } from "./closure.js";
import { minimize } from "./minimize.js";

function treeWith(path: string): Tree {
  const t = new Tree();
  t.ensureDir(path.split("/").slice(0, -1).join("/"), 0);
  t.set(path, {
    inode: {
      kind: "file",
      mode: 0o755,
      uid: 0,
      gid: 0,
      mtime: 0,
      content: bufferContent(Buffer.from("#!/bin/x\n")),
    },
    layer: 0,
  });
  return t;
}

for (const level of ["none", "safe"] as const) {
  test(`--minimize ${level}: an entrypoint missing from the image is a warning naming it`, async () => {
    for (const [entry, found] of [
      ["/usr/bin/app", true],
      ["/nope", false],
      ["nope", false],
    ] as const) {
      const t = treeWith("usr/bin/app");
      const app = resolveAppConfig({ entrypoint: [entry], env: ["PATH=/usr/bin"] }, {}, {});
      const { warnings } = await minimize(t, {
        level,
        app,
        closure: treeClosureResolver(t, "amd64", app.env),
        added: [],
        keep: [],
        drop: [],
        epoch: 0,
      });
      const named = warnings.filter((w) => w.includes(`entrypoint ${entry}`));
      assert.equal(named.length, found ? 0 : 1, `${entry}: ${JSON.stringify(warnings)}`);
      if (!found) assert.match(named[0]!, /cannot start/);
    }
  });
}
