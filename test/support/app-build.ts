/** A one-script app root under WORK/root and the images slimroot builds from it (push, pull, forms). */
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runCli } from "./cli.js";
import { busyboxFixture } from "./fixtures.js";

/** Writes WORK/root/usr/bin/app; returns a builder: `build(name, args)` gives WORK/name. */
export async function appBuilder(work: string): Promise<(name: string, args: string[]) => Promise<string>> {
  await mkdir(join(work, "root/usr/bin"), { recursive: true });
  await writeFile(join(work, "root/usr/bin/app"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
  return async (name, args) => {
    const out = join(work, name);
    const r = await runCli([
      "build",
      `dir:${join(work, "root")}`,
      "--entrypoint",
      "/usr/bin/app",
      ...args,
      "-o",
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    return out;
  };
}

/** WORK/NAME: busybox's image (amd64) whose command is `sh -c SCRIPT`. */
export async function busyboxScriptImage(work: string, name: string, script: string): Promise<string> {
  const fx = await busyboxFixture("amd64");
  const image = join(work, name);
  const built = await runCli(["build", fx.ociRef, "-o", image, "--", "sh", "-c", script]);
  assert.equal(built.code, 0, built.stderr);
  return image;
}
