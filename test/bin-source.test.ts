// The seed's second route: a host executable becomes the app (bin:), static or dynamic, booted.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
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

/** Exit 1 and one line on stderr matching `pattern`. */
function assertRefused(r: { code: number; stderr: string }, pattern: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, pattern);
}

async function executable(name: string, data: Buffer | string): Promise<string> {
  const file = join(work, name);
  await writeFile(file, data);
  await chmod(file, 0o755);
  return file;
}

test("bin: refuses what the kernel would not run: random bytes, text, truncated ELFs", async () => {
  const out = join(work, "refused.cpio");
  const { randomBytes } = await import("node:crypto");
  const random = await executable("random", randomBytes(4096));
  assertRefused(
    await runCli(["build", `bin:${random}`, "-o", out]),
    /^slimroot: bin:.*random: not an ELF executable or a #! script$/,
  );
  const text = await executable("text", "echo hello\n");
  assertRefused(await runCli(["build", `bin:${text}`, "-o", out]), /: not an ELF executable or a #! script$/);
  const dynamic = await compile("whole-dynamic", []);
  const cutDynamic = await executable("cut-dynamic", (await readFile(dynamic)).subarray(0, 3000));
  assertRefused(
    await runCli(["build", `bin:${cutDynamic}`, "-o", out]),
    /cut-dynamic: not a runnable ELF executable: /,
  );
  const stat = await compile("whole-static", ["-static"]);
  const whole = await readFile(stat);
  const cutStatic = await executable("cut-static", whole.subarray(0, whole.length >> 1));
  assertRefused(
    await runCli(["build", `bin:${cutStatic}`, "-o", out]),
    /cut-static: not a runnable ELF executable: .*past the end/,
  );
  const noInterp = await executable("bad-script", "#!/no/such/shell\necho\n");
  assertRefused(
    await runCli(["build", `bin:${noInterp}`, "-o", out]),
    /bad-script: its #! interpreter \/no\/such\/shell does not exist/,
  );
});

test("bin: a #! script is taken with its interpreter's closure", async () => {
  const script = await executable("hello.sh", "#!/bin/sh\necho hello\n");
  const out = join(work, "script.cpio");
  const b = await runCli(["build", `bin:${script}`, "-o", out]);
  assert.equal(b.code, 0, b.stderr);
  const listing = (await runCli(["inspect", "--json", out])).stdout;
  const paths = new Map<string, number>(
    JSON.parse(listing).entries.map((e: { path: string; mode: number }) => [e.path, e.mode]),
  );
  assert.equal(paths.get("usr/local/bin/hello.sh")! & 0o170000, 0o100000, "a regular file");
  assert.ok(
    [...paths.keys()].some((p) => /^(usr\/)?bin\/(sh|dash)$/.test(String(p))),
    "the interpreter came along",
  );
});

test("bin: a relative symlink is followed as the host runs it: the file, under the name given", async () => {
  const real = await compile("real-app", ["-static"]);
  await mkdir(join(work, "links"), { recursive: true });
  await symlink("../real-app", join(work, "links", "app"));
  const out = join(work, "link.cpio");
  const b = await runCli(["build", `bin:${join(work, "links", "app")}`, "-o", out]);
  assert.equal(b.code, 0, b.stderr);
  const info = JSON.parse((await runCli(["inspect", "--json", out])).stdout);
  const entry = info.entries.find((e: { path: string }) => e.path === "usr/local/bin/app");
  assert.equal(entry.mode & 0o170000, 0o100000, "a file, not a link that would dangle in the image");
  assert.equal(entry.size, (await readFile(real)).length);
  assert.ok(
    !info.entries.some((e: { path: string }) => e.path.includes("real-app")),
    "nothing at the host's path",
  );
  assert.deepEqual(info.app.args, ["/usr/local/bin/app"]);
});

test("bin: an aarch64 binary makes an arm64 image; a --platform that disagrees is an error", async () => {
  await fetchKernel({ arch: "arm64" });
  const src = join(work, "arm.c");
  await writeFile(src, '#include <stdio.h>\nint main(void) { puts("hello from aarch64"); return 7; }\n');
  const exe = join(work, "arm-app");
  execFileSync("aarch64-linux-gnu-gcc", ["-O2", "-static", "-o", exe, src]);
  const out = join(work, "arm.cpio.gz");
  assertRefused(
    await runCli(["build", `bin:${exe}`, "--platform", "linux/amd64", "-o", out]),
    /^slimroot: bin:.*arm-app: the binary is arm64, but --platform says linux\/amd64$/,
  );
  const b = await runCli(["build", `bin:${exe}`, "-o", out]);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /, arm64, /);
  const r = await runCli(["run", out, "--timeout", "180s"]);
  assert.equal(r.code, 7, r.stderr);
  assert.match(r.stdout, /hello from aarch64/);
});
