import assert from "node:assert/strict";
import { test } from "node:test";
import { resolveAppConfig } from "../appconfig/appconfig.js";
import { bufferContent } from "../tree/spool.js";
import { Tree } from "../tree/tree.js";
import { treeClosureResolver } from "./closure.js";
import { minimize } from "./minimize.js";

function tree(spec: Record<string, string | { link: string }>): Tree {
  const t = new Tree();
  for (const [path, what] of Object.entries(spec)) {
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

test("trace keeps what fanotify cannot see: links to traced files and dirs, links into /dev, Python sources and landmarks", async () => {
  const t = tree({
    "usr/bin/app": "#!/usr/bin/python3.11\n",
    "usr/bin/python3.11": "not an ELF",
    "usr/bin/other": "x",
    bin: { link: "usr/bin" },
    "usr/bin/app-alias": { link: "app" },
    "usr/bin/other-alias": { link: "other" },
    "etc/site/default": "conf",
    "etc/enabled/default": { link: "../site/default" },
    "var/log/app.log": { link: "/dev/stdout" },
    "usr/lib/python3.11/os.py": "",
    "usr/lib/python3.11/json/__init__.py": "",
    "usr/lib/python3.11/json/__pycache__/__init__.cpython-311.pyc": "",
    "usr/lib/python3.11/http/server.py": "",
    "usr/lib/python3.11/http/__pycache__/server.cpython-311.opt-1.pyc": "",
    "usr/lib/python3.11/unused.py": "",
  });
  t.ensureDir("usr/lib/python3.11/lib-dynload", 0);
  const app = resolveAppConfig({ entrypoint: ["/usr/bin/app"] }, {}, {});
  const { reasons } = await minimize(t, {
    level: "trace",
    app,
    closure: treeClosureResolver(t, "amd64", app.env),
    profile: [
      "usr/bin/app",
      "etc/site/default",
      "usr/lib/python3.11/json/__pycache__/__init__.cpython-311.pyc",
      "usr/lib/python3.11/http/__pycache__/server.cpython-311.opt-1.pyc",
      "no/such/file",
    ],
    added: [],
    keep: [],
    drop: [],
    epoch: 0,
  });
  for (const [p, why] of [
    ["bin", /holds traced files/],
    ["usr/bin/app-alias", /symlink to traced \/usr\/bin\/app/],
    ["etc/enabled/default", /symlink to traced/],
    ["var/log/app.log", /symlink into \/dev/],
    ["usr/lib/python3.11/json/__init__.py", /source of traced/],
    ["usr/lib/python3.11/http/server.py", /source of traced/],
    ["usr/lib/python3.11/os.py", /landmark/],
    ["usr/lib/python3.11/lib-dynload", /landmark/],
  ] as const) {
    assert.match(reasons.get(p) ?? "(dropped)", why, p);
  }
  for (const p of ["usr/bin/other", "usr/bin/other-alias", "usr/lib/python3.11/unused.py", "no/such/file"]) {
    assert.ok(!reasons.has(p), `${p} dropped`);
  }
});
