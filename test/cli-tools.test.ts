// Issue 17 item 14: every host tool a command needs is checked before it starts (one line
// naming the tool and its Debian package, exit 2; 125 for run), and run's own errors, a bad
// option too, are 125 as docker run's are.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { after, before, test } from "node:test";
import { type CliResult, runCli } from "./support/cli.js";

let work: string;
let root: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-tools-"));
  root = join(work, "root");
  await mkdir(join(root, "bin"), { recursive: true });
  await writeFile(join(root, "bin", "app"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A PATH of one directory with a link to every program on PATH except `missing`. */
async function pathWithout(...missing: string[]): Promise<string> {
  const bin = await mkdtemp(join(work, "bin-"));
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (missing.includes(name) || existsSync(join(bin, name))) continue;
      await symlink(join(dir, name), join(bin, name));
    }
  }
  return bin;
}

function assertOneLine(r: CliResult, code: number, pattern: RegExp): void {
  assert.equal(r.code, code, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0]!, pattern);
}

for (const [args, tool, pkg] of [
  [["--format", "ext4"], "mke2fs", "e2fsprogs"],
  [["--format", "ext4"], "debugfs", "e2fsprogs"],
  [["--format", "erofs"], "setfattr", "attr"],
  [["--format", "squashfs"], "mksquashfs", "squashfs-tools"],
  [["--format", "squashfs"], "fakeroot", "fakeroot"],
  [["--compress", "xz"], "xz", "xz-utils"],
  [["--compress", "zstd"], "zstd", "zstd"],
] as const) {
  test(`build ${args.join(" ")} without ${tool}: one line naming ${tool} and ${pkg}, exit 2, before anything is read`, async () => {
    const out = join(work, `out-${tool}`);
    const r = await runCli(
      ["build", `dir:${join(work, "no-such-dir")}`, "--entrypoint", "/bin/app", ...args, "-o", out],
      { PATH: await pathWithout(tool) },
    );
    // The source does not exist: the tool is said first, so nothing was read.
    assertOneLine(
      r,
      2,
      new RegExp(
        `^slimroot: build ${args.join(" ")} needs ${tool}, not found on PATH: apt-get install ${pkg}$`,
      ),
    );
    assert.equal(existsSync(out), false);
  });
}

test("two missing tools: both named, each package once", async () => {
  const r = await runCli(
    ["build", `dir:${root}`, "--entrypoint", "/bin/app", "--format", "ext4", "-o", join(work, "two.ext4")],
    { PATH: await pathWithout("mke2fs", "debugfs", "setfattr") },
  );
  assertOneLine(
    r,
    2,
    /needs setfattr, mke2fs and debugfs, not found on PATH: apt-get install attr e2fsprogs$/,
  );
});

test("inspect and run of an xz image without xz, and run without QEMU: the tool and its package", async () => {
  const image = join(work, "app.cpio.xz");
  const b = await runCli([
    "build",
    `dir:${root}`,
    "--entrypoint",
    "/bin/app",
    "--compress",
    "xz",
    "-o",
    image,
  ]);
  assert.equal(b.code, 0, b.stderr);
  const noXz = await pathWithout("xz");
  assertOneLine(
    await runCli(["inspect", image], { PATH: noXz }),
    2,
    /xz not found on PATH \(apt-get install xz-utils\)$/,
  );
  assertOneLine(
    await runCli(["run", image], { PATH: noXz }),
    125,
    /xz not found on PATH \(apt-get install xz-utils\)$/,
  );
  const plain = join(work, "app.cpio");
  assert.equal(
    (await runCli(["build", `dir:${root}`, "--entrypoint", "/bin/app", "--compress", "none", "-o", plain]))
      .code,
    0,
  );
  assertOneLine(
    await runCli(["run", plain], { PATH: await pathWithout("qemu-system-x86_64") }),
    125,
    /^slimroot: run needs qemu-system-x86_64, not found on PATH: apt-get install qemu-system-x86$/,
  );
});

test("run: a bad option or argument is slimroot's own error, 125 like every other (docker run's rule)", async () => {
  assertOneLine(await runCli(["run", "--bogus", "x.cpio"]), 125, /^slimroot: unknown option '--bogus'$/);
  assertOneLine(
    await runCli(["run", "--vmm", "bogus", "x.cpio"]),
    125,
    /^slimroot: --vmm bogus: expected qemu or firecracker$/,
  );
  assertOneLine(await runCli(["run"]), 125, /^slimroot: missing required argument 'image'$/);
  // Other commands keep 1 for a usage error; help is not an error.
  assertOneLine(await runCli(["build", "--bogus", "-o", "x"]), 1, /unknown option '--bogus'/);
  assert.equal((await runCli(["run", "--help"])).code, 0);
});
