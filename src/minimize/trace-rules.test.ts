import assert from "node:assert/strict";
import { test } from "node:test";
import { profilePaths } from "../trace/paths.js";
import { treeFs } from "../tree/image-fs.js";
import { LISTED_WHY } from "./minimize.js";
import { minimizeTraced, tree } from "./testing.js";

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
  const reasons = await minimizeTraced(t, {
    paths: [
      "usr/bin/app",
      "etc/site/default",
      "usr/lib/python3.11/json/__pycache__/__init__.cpython-311.pyc",
      "usr/lib/python3.11/http/__pycache__/server.cpython-311.opt-1.pyc",
      "no/such/file",
    ],
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

test("the recorder's records resolve in the image: links on the way, failed lookups, listings, run-time files", () => {
  const t = tree({
    "usr/bin/app": "x",
    bin: { link: "usr/bin" },
    "etc/app/conf.d/a.conf": "a",
    "etc/app/conf.d/b.conf": "b",
    "etc/app/enabled": { link: "conf.d" },
    "var/log/app.log": { link: "/dev/stdout" },
    "var/run": { link: "/run" },
    "run/app/seed.conf": "4",
    "usr/lib/plugins/p1.so": "p",
    "usr/lib/plugins/p2.so": "p",
  });
  const r = profilePaths(
    [
      "/bin/app",
      "/bin/app",
      "/etc/app/enabled/../conf.d/a.conf",
      "? /etc/app/conf.d/x.conf",
      "? /nothere/at/all",
      "? /proc/1/x",
      "/var/log/app.log",
      "/var/run/app.pid",
      "/run/app/seed.conf",
      "/tmp/made",
      "L /usr/lib/plugins",
      "/usr/lib/plugins/p1.so",
      "/dev/null",
      "/etc/slimroot/app.conf",
    ],
    treeFs(t),
  );
  assert.deepEqual(r, {
    paths: [
      "bin",
      "etc/app/conf.d/a.conf",
      "etc/app/enabled",
      "run/app/seed.conf",
      "usr/bin/app",
      "usr/lib/plugins",
      "usr/lib/plugins/p1.so",
      "var/log/app.log",
      "var/run",
    ],
    listed: ["usr/lib/plugins"],
    missing: ["/etc/app/conf.d/x.conf", "/nothere/at/all"],
    // /tmp and /run are the image's where it ships content (src/guest/layout.ts): what the
    // app read there is kept when the image has it; what it made there is not.
    created: ["run/app.pid", "tmp/made"],
  });
});

test("with recorded lookups the rules for fanotify's blind spots retire; a listed directory keeps what was used in it", async () => {
  const t = tree({
    "usr/bin/app": "x",
    "usr/bin/app-alias": { link: "app" },
    bin: { link: "usr/bin" },
    "var/log/app.log": { link: "/dev/stdout" },
    "usr/lib/python3.11/os.py": "",
    "usr/lib/python3.11/json/__pycache__/__init__.cpython-311.pyc": "",
    "usr/lib/python3.11/json/__init__.py": "",
    "usr/lib/plugins/p1.so": "p",
    "usr/lib/plugins/p2.so": "p",
    "usr/lib/plugins/sub": "dir",
  });
  const reasons = await minimizeTraced(t, {
    paths: [
      "usr/bin/app",
      "usr/lib/python3.11/json/__pycache__/__init__.cpython-311.pyc",
      "usr/lib/plugins",
      "usr/lib/plugins/p1.so",
    ],
    listed: ["usr/lib/plugins"],
    missing: ["/etc/app.conf"],
    lookups: true,
  });
  assert.equal(reasons.get("usr/lib/plugins"), LISTED_WHY);
  assert.match(reasons.get("usr/lib/plugins/p1.so")!, /traced/);
  assert.match(reasons.get("var/log/app.log")!, /symlink into \/dev/);
  for (const p of [
    "bin",
    "usr/bin/app-alias",
    "usr/lib/python3.11/os.py",
    "usr/lib/python3.11/json/__init__.py",
    "usr/lib/plugins/p2.so",
    "usr/lib/plugins/sub",
    "etc/app.conf",
  ])
    assert.ok(!reasons.has(p), `${p} dropped`);
});
