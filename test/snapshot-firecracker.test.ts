// slimroot snapshot --vmm firecracker (issue 18 item 3): Firecracker needs KVM, which these
// machines cannot give a guest, so no Firecracker snapshot is made here. What is checked: the
// API request bodies against Firecracker's own schema, and the files `snapshot --vmm
// firecracker -o DIR` writes (the script at least parses).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  pauseBody,
  resumeBody,
  snapshotCreateBody,
  snapshotLoadBody,
} from "../src/vm/firecracker-snapshot.js";
import { runCli } from "./support/cli.js";
import { definitionValidator, NO_SHARED, sharedFirecrackerDir } from "./support/firecracker-schema.js";

const shared = sharedFirecrackerDir();
let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-fc-snapshot-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

test("the snapshot request bodies are valid by Firecracker's schema", {
  skip: shared ? false : NO_SHARED,
}, () => {
  const check = (name: string, body: unknown) =>
    assert.deepEqual(definitionValidator(shared!, name).errors(body), [], `${name}: ${JSON.stringify(body)}`);
  check("Vm", pauseBody());
  check("Vm", resumeBody());
  check("SnapshotCreateParams", snapshotCreateBody("/srv/app"));
  check("SnapshotLoadParams", snapshotLoadBody("/srv/app"));
  check("SnapshotLoadParams", snapshotLoadBody("/srv/app", "tap7"));
  // A standby's load: paused, resumed by PATCH /vm once its signal came.
  check("SnapshotLoadParams", snapshotLoadBody("/srv/app", "tap7", false));
  // The validator does refuse: a misspelt key fails.
  assert.notDeepEqual(
    definitionValidator(shared!, "SnapshotCreateParams").errors({ snapshot_path: "x", mem_path: "y" }),
    [],
  );
});

test("snapshot --vmm firecracker writes the VM's files, the request bodies and a script", {
  timeout: 300_000,
}, async () => {
  const image = join(work, "app.cpio.gz");
  const b = await runCli(["build", "bin:/bin/busybox", "-o", image, "--", "true"]);
  assert.equal(b.code, 0, b.stderr);
  const dir = join(work, "fc");
  const r = await runCli(["snapshot", image, "--vmm", "firecracker", "--probe", "tcp:80", "-o", dir]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /none here: not run/);
  const load = JSON.parse(await readFile(join(dir, "snapshot-load.json"), "utf8")) as {
    snapshot_path: string;
  };
  assert.equal(load.snapshot_path, join(dir, "vm.state"));
  if (shared) assert.deepEqual(definitionValidator(shared, "SnapshotLoadParams").errors(load), []);
  const script = join(dir, "snapshot.sh");
  assert.equal(spawnSync("sh", ["-n", script]).status, 0);
  // Its standby mode loads paused and resumes on run --standby's own signal, after its line.
  const text = await readFile(script, "utf8");
  assert.match(text, /^resume\|standby\)$/m);
  assert.match(text, /trap 'go=1' USR2/);
  assert.ok(text.includes('"resume_vm":false'), text);
  const usage = spawnSync("sh", [script, "bogus"], { encoding: "utf8" });
  assert.equal(usage.status, 2);
  assert.match(usage.stderr, /resume \[TAP\] \| standby \[TAP\]/);
});
