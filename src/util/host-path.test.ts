import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { hostExecutable } from "./host-path.js";

test("hostExecutable: PATH order, executables only, paths with a slash as given", async () => {
  const dir = await mkdtemp(join(tmpdir(), "slimroot-host-path-"));
  try {
    await writeFile(join(dir, "tool"), "#!/bin/sh\n");
    await chmod(join(dir, "tool"), 0o755);
    await writeFile(join(dir, "data"), "");
    const env = { PATH: `::/nonexistent:${dir}:/usr/bin` };
    assert.equal(hostExecutable("tool", env), join(dir, "tool"));
    assert.equal(hostExecutable("data", env), undefined);
    assert.equal(hostExecutable("sh", env), "/usr/bin/sh");
    assert.equal(hostExecutable(join(dir, "tool"), { PATH: "" }), join(dir, "tool"));
    assert.equal(hostExecutable(join(dir, "data"), env), undefined);
    assert.equal(hostExecutable("tool", {}), undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
