// The seed's second route: a host executable becomes the app (bin:), static or dynamic, booted.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fetchKernel } from "../src/kernel/fetch.js";
import { runCli } from "./support/cli.js";

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-bin-"));
  await fetchKernel({ arch: "amd64" });
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const PROGRAM = `
#include <stdio.h>
#include <pwd.h>
#include <unistd.h>
int main(int argc, char **argv) {
  FILE *f = fopen("/opt/app/conf/greeting", "r");
  char line[64] = "no greeting";
  if (f) { fgets(line, sizeof line, f); fclose(f); }
  struct passwd *pw = getpwuid(getuid());
  printf("%s uid=%d user=%s argc=%d\\n", line, (int)getuid(), pw ? pw->pw_name : "?", argc);
  return 5;
}`;

async function compile(name: string, flags: string[]): Promise<string> {
  const src = join(work, "app.c");
  await writeFile(src, PROGRAM);
  const out = join(work, name);
  execFileSync("gcc", ["-O2", ...flags, "-o", out, src]);
  return out;
}

for (const [kind, flags] of [
  ["static", ["-static"]],
  ["dynamic", []],
] as const) {
  test(`bin: a ${kind} host executable with --add files boots and runs`, async () => {
    const exe = await compile(`app-${kind}`, [...flags]);
    const conf = join(work, "conf");
    await mkdir(conf, { recursive: true });
    await writeFile(join(conf, "greeting"), "hello from conf");
    const image = join(work, `${kind}.cpio.gz`);
    const b = await runCli([
      "build",
      `bin:${exe}`,
      "--add",
      `${conf}:/opt/app/conf`,
      "--minimize",
      "static",
      "-o",
      image,
      "--",
      "one",
      "two",
    ]);
    assert.equal(b.code, 0, b.stderr);
    const listing = (await runCli(["inspect", image])).stdout;
    if (kind === "static") assert.doesNotMatch(listing, /libc\.so/, "a static binary brings only itself");
    else assert.match(listing, /libc\.so\.6/, "a dynamic one brings its closure");
    const r = await runCli(["run", image, "--timeout", "120s"]);
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stdout, /hello from conf uid=0 user=root argc=3/);
  });
}
