// The set-up a fresh Debian 12 machine gets from the Makefile, and the README's pointers.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { REPO } from "./support/cli.js";

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-setup-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A Makefile variable as make expands it. */
function makeVariable(name: string): string[] {
  const out = execFileSync("make", ["-s", "--no-print-directory", "-f", "Makefile", "-f", "-", "print-var"], {
    cwd: REPO,
    input: `print-var:\n\t@echo $(${name})\n`,
    encoding: "utf8",
  });
  return out.trim().split(/\s+/);
}

test("the Makefile installs what dpkg-query says is missing, by package", async () => {
  const dir = await mkdtemp(join(work, "make-"));
  await copyFile(join(REPO, "Makefile"), join(dir, "Makefile"));
  // A stand-in apt-get records what it was asked for; cpio is installed here, the other is not.
  const bin = join(dir, "bin");
  execFileSync("mkdir", [bin]);
  await writeFile(join(bin, "apt-get"), `#!/bin/sh\necho "$@" >> ${join(dir, "apt.log")}\n`);
  await chmod(join(bin, "apt-get"), 0o755);
  execFileSync("make", ["-s", ".stamp-apt", "APT_PACKAGES=cpio no-such-package-slimroot"], {
    cwd: dir,
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
    stdio: "pipe",
  });
  const log = await readFile(join(dir, "apt.log"), "utf8");
  assert.match(log, /^install .*no-such-package-slimroot$/m);
  assert.doesNotMatch(log, /install .*\bcpio\b/, "an installed package is not installed again");
});

test("every package the tests need is listed, among them the one with aarch64's crti.o", () => {
  const listed = new Set(makeVariable("APT_PACKAGES"));
  // The ELF closure tests link aarch64 executables: crti.o must come from a listed package.
  const owner = execFileSync("dpkg-query", ["-S", "/usr/aarch64-linux-gnu/lib/crti.o"], { encoding: "utf8" });
  assert.ok(listed.has(owner.split(":")[0]!), `${owner.trim()} is in APT_PACKAGES`);
  for (const pkg of listed) {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own field syntax
    const status = execFileSync("dpkg-query", ["-W", "-f=${Status}", pkg], { encoding: "utf8" });
    assert.equal(status, "install ok installed", `${pkg} is installed here`);
  }
});

test("make bench runs scripts that exist", () => {
  const commands = execFileSync("make", ["-s", "-n", "--no-print-directory", "bench"], {
    cwd: REPO,
    encoding: "utf8",
  });
  const scripts = [...commands.matchAll(/scripts\/[\w.-]+\.ts/g)].map((m) => m[0]);
  assert.ok(scripts.length > 0, commands);
  for (const s of scripts) assert.ok(existsSync(join(REPO, s)), `${s} exists`);
});

test("the README points only at files the repository has", async () => {
  const readme = await readFile(join(REPO, "README.md"), "utf8");
  const links = [...readme.matchAll(/\]\(([^)#:]+)(?:#[^)]*)?\)/g)].map((m) => m[1]!);
  for (const l of links) assert.ok(existsSync(join(REPO, l)), `README links ${l}`);
  if (!existsSync(join(REPO, "NOTES.md")) && !existsSync(join(REPO, "NOTES")))
    assert.doesNotMatch(readme, /\bNOTES\b/, "the README cites no NOTES file the repository lacks");
});
