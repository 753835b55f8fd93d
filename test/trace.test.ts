/**
 * `slimroot trace` and `build --minimize trace` end to end on real Debian images, booted under
 * QEMU (TCG) with Debian's cloud kernel: each app is traced while probes talk to it, then
 * built from the profile, and the build boots the result and runs the same probes again.
 *
 * Slow: every trace and every verified build is one boot (busybox ~5 s, nginx and lighttpd
 * ~8 s, python ~12 s with the stop). slimroot runs with TMPDIR set to this file's work
 * directory, so leftover QEMU processes can be recognised.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fetchKernel } from "../src/kernel/fetch.js";
import { decodeProfile, type Profile, profileProbes } from "../src/trace/profile.js";
import { type CliResult, runCli } from "./support/cli.js";
import { busyboxFixture, lighttpdFixture, nginxFixture, pythonFixture } from "./support/fixtures.js";
import { qemusUsing } from "./support/qemu.js";

const TEST_TIMEOUT_MS = 240_000;

let work = "";
const env = () => ({ TMPDIR: work });

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-trace-test-"));
  await fetchKernel({ arch: "amd64" });
});
after(async () => {
  assert.deepEqual(await qemusUsing(work), [], "QEMU processes left behind");
  await rm(work, { recursive: true, force: true });
});

async function cli(args: string[]): Promise<CliResult> {
  const r = await runCli(args, env());
  assert.deepEqual(await qemusUsing(work), [], `QEMU still running after slimroot ${args[0]}`);
  return r;
}

/** `slimroot trace`, which must succeed; returns the profile. */
async function trace(name: string, args: string[]): Promise<{ file: string; profile: Profile }> {
  const file = join(work, `${name}.profile`);
  const r = await cli(["trace", "-o", file, ...args]);
  assert.equal(r.code, 0, `trace ${name}:\n${r.stderr}`);
  return { file, profile: decodeProfile(await readFile(file, "utf8"), file) };
}

/** `slimroot build`; returns the result and the output path. */
async function build(name: string, args: string[]): Promise<CliResult & { out: string }> {
  const out = join(work, `${name}.cpio.gz`);
  return { ...(await cli(["build", "-o", out, ...args])), out };
}

/** Every entry of an image, with inspect --why's reason; none may lack one. */
async function explained(image: string): Promise<Map<string, string>> {
  const r = await runCli(["inspect", "--json", "--why", image]);
  assert.equal(r.code, 0, r.stderr);
  const entries = JSON.parse(r.stdout).entries as { path: string; why?: string }[];
  for (const e of entries) {
    assert.ok(e.why && e.why !== "?" && !e.why.startsWith("(not in"), `${e.path} has no reason: ${e.why}`);
  }
  return new Map(entries.map((e) => [e.path, e.why!]));
}

function assertHas(paths: Iterable<string>, wanted: string[], what: string): void {
  const set = new Set(paths);
  for (const p of wanted) assert.ok(set.has(p), `${what} has ${p}`);
}

/** A traced build, verified with the profile's probes. */
async function tracedBuild(name: string, source: string, profile: string, imageArgs: string[] = []) {
  const b = await build(name, [source, "--minimize", "trace", "--profile", profile, ...imageArgs]);
  assert.equal(b.code, 0, `build ${name}:\n${b.stderr}`);
  assert.match(b.stdout, /^verified: .* passed$/m);
  return { ...b, why: await explained(b.out) };
}

describe("busybox httpd, with a page added", { timeout: 6 * TEST_TIMEOUT_MS }, () => {
  let source = "";
  let www = "";
  const httpd = () => ["--add", `${www}:/www`, "--", "httpd", "-f", "-p", "8080", "-h", "/www"];
  let profileFile = "";
  before(async () => {
    source = (await busyboxFixture("amd64")).ociRef;
    www = join(work, "www");
    await mkdir(www);
    await writeFile(join(www, "index.html"), "<h1>hello from busybox</h1>\n");
    await writeFile(join(www, "second.html"), "<h1>another path</h1>\n");
  });

  test("trace runs http, tcp and exec probes and records the binary and the page", async () => {
    const probes = [
      "http:8080/",
      "tcp:8080:GET / HTTP/1.0\\r\\n\\r\\n:hello from busybox",
      "exec:curl -fsS http://127.0.0.1:$SLIMROOT_PORT_8080/index.html | grep -q hello",
    ];
    const { file, profile } = await trace("busybox", [
      source,
      ...probes.flatMap((p) => ["--probe", p]),
      ...httpd(),
    ]);
    profileFile = file;
    assertHas(profile.paths, ["bin/busybox", "www/index.html"], "the profile");
    assert.ok(!profile.paths.some((p) => /^(proc|dev|sys|tmp|run)\/|^init$|^etc\/slimroot/.test(p)));
    assert.deepEqual(profileProbes(profile, file, true), probes);
    assert.match(profile.header.digest ?? "", /^sha256:/);
    assert.match(profile.header.kernel ?? "", /cloud-amd64/);
  });

  test("build --minimize trace passes the profile's probes and explains every file", async () => {
    // The profile holds an exec: probe (the curl above): it runs only when allowed.
    const { why } = await tracedBuild("busybox-trace", source, profileFile, [
      "--allow-profile-exec",
      ...httpd(),
    ]);
    assert.match(why.get("www/index.html")!, /traced|--add/);
    assert.match(why.get("bin/httpd")!, /entrypoint|symlink|traced/);
  });

  test("static is sound for it: the same probes pass", async () => {
    const b = await build("busybox-static", [
      source,
      "--minimize",
      "static",
      "--probe",
      "http:8080/",
      ...httpd(),
    ]);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /^verified: http:8080\/ passed$/m);
  });

  test("trace --merge adds another path through the app to a profile: paths and probes of both", async () => {
    const file = join(work, "merged.profile");
    await writeFile(file, await readFile(profileFile));
    const r = await cli([
      "trace",
      "--merge",
      "-o",
      file,
      source,
      "--probe",
      "http:8080/second.html",
      ...httpd(),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const merged = decodeProfile(await readFile(file, "utf8"), file);
    assertHas(merged.paths, ["bin/busybox", "www/index.html", "www/second.html"], "the merged profile");
    assert.deepEqual(profileProbes(merged, file, true).at(-1), "http:8080/second.html");
    assert.equal(profileProbes(merged, file, true).length, 4);
    assert.equal(merged.header.recorder, "syscalls");
  });

  test("build --profile a --profile b keeps the union; a profile of another image warns naming both digests", async () => {
    const a = join(work, "a.profile");
    const b = join(work, "b.profile");
    const other = `sha256:${"0".repeat(64)}`;
    await writeFile(
      a,
      "# slimroot profile v1\n# recorder: syscalls\n/bin/busybox\n/www/index.html\n? /etc/a.conf\n",
    );
    await writeFile(
      b,
      `# slimroot profile v1\n# digest: ${other}\n# recorder: syscalls\n/etc/passwd\nL /www\n`,
    );
    const r = await build("union", [
      source,
      "--minimize",
      "trace",
      "--profile",
      a,
      "--profile",
      b,
      "--no-verify",
      ...httpd(),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const warning = r.stderr.split("\n").find((l) => l.includes(other));
    assert.ok(warning, r.stderr);
    assert.match(
      warning!,
      new RegExp(`b\\.profile was made for image ${other}, this image is sha256:[0-9a-f]{64}`),
    );
    assert.ok(!r.stderr.includes("a.profile was made"), "a profile without a digest is not checked");
    const why = await explained(r.out);
    assert.match(why.get("www/index.html")!, /traced|--add/);
    assert.match(why.get("etc/passwd")!, /traced/);
    const shown = await runCli(["inspect", "--why", r.out]);
    assert.match(shown.stdout, /\/etc\/a\.conf {2}# looked up in the trace/);
  });

  test("a probe that never passes fails the trace with one line naming it", async () => {
    const file = join(work, "never.profile");
    const r = await cli([
      "trace",
      "-o",
      file,
      "--timeout",
      "20s",
      source,
      "--probe",
      "http:8080/missing",
      ...httpd(),
    ]);
    assert.equal(r.code, 1, r.stderr);
    const lines = r.stderr.split("\n").filter((l) => l && !/^slimroot: (building|booting)/.test(l));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^slimroot: probe http:8080\/missing: .*HTTP 404/);
    await assert.rejects(readFile(file), "no profile written");
  });

  test("without probes a batch app is traced until it exits; odd file names survive", async () => {
    const data = join(work, "data");
    await mkdir(data);
    await writeFile(join(data, "new\nline"), "1\n");
    await writeFile(join(data, "back\\slash"), "2\n");
    await writeFile(join(data, "unread"), "3\n");
    // The image ships content in /run: the init keeps it there (no tmpfs over it), so what
    // the app reads there is the image's and is traced (src/guest/layout.ts).
    const run = join(work, "run-app");
    await mkdir(run);
    await writeFile(join(run, "seed.conf"), "4\n");
    const { profile } = await trace("batch", [
      source,
      "--add",
      `${data}:/data`,
      "--add",
      `${run}:/run/app`,
      "--",
      "sh",
      "-c",
      // A trace line the app forges is its own text: only the init's report counts.
      "cat /data/new* /data/back* /run/app/seed.conf >/dev/null; echo done > /tmp/scratch; cat /tmp/scratch; echo SLIMROOT_TRACE /data/unread",
    ]);
    assertHas(
      profile.paths,
      ["bin/busybox", "data/new\nline", "data/back\\slash", "run/app/seed.conf"],
      "the profile",
    );
    assert.ok(!profile.paths.includes("data/unread"));
    assert.ok(!profile.paths.includes("tmp/scratch"));
    assert.equal(profile.header["exit status"], "0");
  });
});

describe("nginx", { timeout: 6 * TEST_TIMEOUT_MS }, () => {
  let source = "";
  let profileFile = "";
  before(async () => {
    source = (await nginxFixture()).ociRef;
  });

  test("trace records nginx, its config and the page it served", async () => {
    const { file, profile } = await trace("nginx", [source, "--probe", "http:80/"]);
    profileFile = file;
    assertHas(
      profile.paths,
      [
        "usr/sbin/nginx",
        "etc/nginx/nginx.conf",
        "etc/nginx/sites-available/default",
        "var/www/html/index.nginx-debian.html",
        "usr/lib/x86_64-linux-gnu/libc.so.6",
      ],
      "the profile",
    );
  });

  test("build --minimize trace passes the probe; links nginx went through are kept", async () => {
    const { why } = await tracedBuild("nginx-trace", source, profileFile);
    // The recorder saw the path nginx named, links and all (fanotify alone saw only the file
    // at their end, and a rule kept every link to a traced file).
    assert.match(why.get("etc/nginx/sites-enabled/default")!, /traced/);
    assert.match(why.get("var/log/nginx/error.log")!, /traced|symlink into \/dev/);
    assert.ok(!why.has("usr/bin/bash"));
  });

  test("the recorder sees what fanotify cannot: stat, a failed lookup, readlink, a listed directory; the traced build answers", async () => {
    // Each word of the answer needs what only a lookup reveals: debian_version is stat()ed,
    // never opened; optional.conf must stay absent; the snippets are found by listing their
    // directory (only the one the glob matches is read); the awk link is read, not followed.
    const script = [
      "test -f /etc/debian_version && D=yes",
      "test -e /etc/nginx/conf.d/optional.conf && exit 4",
      'S=; for f in /etc/nginx/snippets/s*.conf; do cat $f >/dev/null; S="$S $(basename $f)"; done',
      'echo "snippets$S awk $(readlink /usr/bin/awk) debian $D" > /var/www/html/probe.txt',
      "exec nginx -g 'daemon off;'",
    ].join("; ");
    const probe =
      "tcp:80:GET /probe.txt HTTP/1.0\\r\\n\\r\\n:snippets snakeoil.conf awk /etc/alternatives/awk debian yes";
    const args = ["--entrypoint", "/bin/sh", "--", "-c", script];
    const { file, profile } = await trace("nginx-lookups", [source, "--probe", probe, ...args]);
    assertHas(
      profile.paths,
      ["etc/debian_version", "usr/bin/awk", "etc/nginx/snippets/snakeoil.conf"],
      "the profile",
    );
    assert.ok(
      profile.missing?.includes("/etc/nginx/conf.d/optional.conf"),
      "the failed lookup is in the profile",
    );
    assert.ok(profile.listed?.includes("etc/nginx/snippets"), "the listed directory is in the profile");
    assert.equal(profile.header.recorder, "syscalls");
    const { why, out } = await tracedBuild("nginx-lookups-trace", source, file, args);
    const shown = await runCli(["inspect", "--why", out]);
    assert.match(
      shown.stdout,
      /^\?\s+\/etc\/nginx\/conf\.d\/optional\.conf {2}# looked up in the trace, not in the image/m,
    );
    assert.match(why.get("etc/debian_version")!, /traced/);
    assert.match(why.get("etc/nginx/snippets")!, /listed/);
    assert.ok(!why.has("etc/nginx/snippets/fastcgi-php.conf"), "a listed entry the app did not use goes");
    assert.match(why.get("usr/bin/awk")!, /traced/);
  });

  test("static is not sound for nginx (its page is no ELF dependency): verification fails, the old output stays", async () => {
    const out = join(work, "nginx-static.cpio.gz");
    await writeFile(out, "previous build\n");
    const r = await cli([
      "build",
      "-o",
      out,
      source,
      "--minimize",
      "static",
      "--probe",
      "http:80/",
      "--verify-timeout",
      "20s",
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /^slimroot: verification failed, output not written: probe http:80\/: .*HTTP 40[34]/m,
    );
    assert.equal(await readFile(out, "utf8"), "previous build\n");
    assert.deepEqual(
      (await readdir(work)).filter((f) => f.startsWith(".nginx-static")),
      [],
      "no temp file left",
    );
  });
});

describe("lighttpd: dlopen'd modules and perl children", { timeout: 3 * TEST_TIMEOUT_MS }, () => {
  test("trace records the plugins and include_shell's perl; the traced build passes", async () => {
    const source = (await lighttpdFixture()).ociRef;
    const { file, profile } = await trace("lighttpd", [
      source,
      "--probe",
      "http:80/",
      "--probe",
      "http:80/files/",
    ]);
    assertHas(
      profile.paths,
      [
        "usr/sbin/lighttpd",
        "usr/lib/lighttpd/mod_dirlisting.so",
        "usr/lib/lighttpd/mod_accesslog.so",
        "usr/bin/perl",
        "usr/share/lighttpd/create-mime.conf.pl",
        "var/www/html/index.html",
      ],
      "the profile",
    );
    const { why } = await tracedBuild("lighttpd-trace", source, file);
    assert.match(why.get("bin")!, /traced/, "include_shell runs /bin/sh");
    assert.match(why.get("etc/lighttpd/conf-enabled/10-dir-listing.conf")!, /traced/);
  });
});

describe("python3 -m http.server", { timeout: 3 * TEST_TIMEOUT_MS }, () => {
  test("trace records the interpreter and the modules it imported; the traced build passes", async () => {
    const source = (await pythonFixture()).ociRef;
    const { file, profile } = await trace("python", [source, "--probe", "http:8000/"]);
    assertHas(profile.paths, ["usr/bin/python3.11", "srv/www/index.html"], "the profile");
    assert.ok(profile.paths.some((p) => /^usr\/lib\/python3\.11\/http\/(__pycache__\/)?server/.test(p)));
    const { why } = await tracedBuild("python-trace", source, file);
    assert.ok(why.has("usr/lib/python3.11/http/server.py"));
    assert.match(why.get("usr/lib/python3.11/os.py")!, /landmark|traced/);
    assert.ok(!why.has("usr/lib/python3.11/tkinter"), "unused parts of the standard library go");
  });
});

describe("record mode on arm64", { timeout: TEST_TIMEOUT_MS }, () => {
  test("the init records on aarch64 too", async () => {
    await fetchKernel({ arch: "arm64" });
    const source = (await busyboxFixture("arm64")).ociRef;
    const { profile } = await trace("arm64", [
      source,
      "--platform",
      "linux/arm64",
      "--",
      "sh",
      "-c",
      "cat /etc/passwd >/dev/null; test -e /etc/nothere; ls /etc >/dev/null",
    ]);
    assertHas(profile.paths, ["bin/busybox", "etc/passwd"], "the profile");
    assert.equal(profile.header.arch, "arm64");
    // The syscall recorder too: aarch64 has only the *at calls.
    assert.equal(profile.header.recorder, "syscalls");
    assert.ok(profile.missing?.includes("/etc/nothere"), "a failed lookup on arm64");
    assert.ok(profile.listed?.includes("etc"), "a listing on arm64");
  });
});
