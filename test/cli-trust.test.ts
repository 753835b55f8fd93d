// Issue 7, the CLI's side: nothing from a profile runs on the host, outputs are never the
// input or a device, the image and its .why are replaced together, one clear line for what
// the user got wrong, and a CLI that behaves in a pipe and on every stop signal.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { build } from "../src/pipeline/build.js";
import { type CliResult, REPO, runCli, startCli } from "./support/cli.js";
import { tarOf, writeOciLayout } from "./support/layers.js";
import { qemusUsing } from "./support/qemu.js";
import { pushTestImage, withRegistry } from "./support/registry-server.js";

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-cli-trust-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A tiny root directory: enough for a build that needs no boot. */
async function rootDir(name: string): Promise<string> {
  const dir = join(work, name);
  await mkdir(join(dir, "bin"), { recursive: true });
  await writeFile(join(dir, "bin", "app"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
  return dir;
}

/** Exit status 1, exactly one line on stderr matching `pattern`. */
function assertOneLine(r: { code: number; stderr: string }, pattern: RegExp, code = 1): void {
  assert.equal(r.code, code, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0]!, pattern);
}

test("a profile's exec: probe is never run: refused with one line naming the profile", async () => {
  const root = await rootDir("profile-exec");
  const marker = join(work, "owned-by-profile");
  const profile = join(work, "evil.profile");
  await writeFile(
    profile,
    `# slimroot profile v1\n# probes: ${JSON.stringify(["http:80/", `exec:touch ${marker}`])}\n/bin/app\n`,
  );
  const outDir = await mkdtemp(join(work, "out-"));
  const out = join(outDir, "app.cpio");
  const r = await runCli([
    "build",
    `dir:${root}`,
    "--entrypoint",
    "/bin/app",
    "--minimize",
    "trace",
    "--profile",
    profile,
    "-o",
    out,
  ]);
  assertOneLine(
    r,
    /^slimroot: .*evil\.profile: refusing the profile's probe "exec:touch .*--allow-profile-exec/,
  );
  assert.equal(existsSync(marker), false, "the profile's command did not run");
  assert.deepEqual(await readdir(outDir), [], "no output");
  // --no-verify runs no probe at all, so the profile is fine for it.
  const quiet = await runCli([
    "build",
    `dir:${root}`,
    "--entrypoint",
    "/bin/app",
    "--minimize",
    "trace",
    "--profile",
    profile,
    "--no-verify",
    "-o",
    out,
  ]);
  assert.equal(quiet.code, 0, quiet.stderr);
  assert.equal(existsSync(marker), false);
  assert.ok((await readFile(out)).length > 0);
});

test("SLIMROOT_CACHE moves the blob cache too (one cache root)", async () => {
  await withRegistry({}, async (registry) => {
    const layer = await tarOf([{ name: "bin/app", body: "#!/bin/sh\n", mode: 0o755 }]);
    const image = await pushTestImage(registry.url, "cache/app", "latest", [layer]);
    const cache = join(work, "moved-cache");
    const xdg = join(work, "xdg");
    const r = await runCli(
      [
        "build",
        `docker://${registry.host}/cache/app:latest`,
        "--insecure",
        "--entrypoint",
        "/bin/app",
        "-o",
        join(work, "cache.cpio"),
      ],
      { SLIMROOT_CACHE: cache, XDG_CACHE_HOME: xdg },
    );
    assert.equal(r.code, 0, r.stderr);
    const blobs = await readdir(join(cache, "blobs", "sha256"));
    assert.ok(
      blobs.includes(image.layers[0]!.digest.slice(7)),
      `the layer is under $SLIMROOT_CACHE: ${blobs}`,
    );
    assert.equal(existsSync(join(xdg, "slimroot")), false, "nothing under $XDG_CACHE_HOME");
  });
});

const PREVIOUS = "previous output, must survive\n";

test("-o that is an input, or inside one, is refused and the input stays as it was", async () => {
  const root = await rootDir("inputs");
  const tarFile = join(work, "rootfs.tar");
  await writeFile(tarFile, await tarOf([{ name: "bin/app", body: "#!/bin/sh\n", mode: 0o755 }]));
  const tarBytes = await readFile(tarFile);
  const layout = join(work, "layout");
  await writeOciLayout(layout, { layers: [tarBytes], gzip: false });
  const index = await readFile(join(layout, "index.json"));
  const profile = join(work, "p.profile");
  await writeFile(profile, "# slimroot profile v1\n/bin/app\n");
  await symlink(tarFile, join(work, "link-to-rootfs.tar"));
  const cases: [string[], RegExp][] = [
    [[`tar:${tarFile}`, "-o", tarFile], /rootfs\.tar is the input tar:.*refusing to overwrite it/],
    [[`tar:${tarFile}`, "-o", join(work, "link-to-rootfs.tar")], /is the input tar:/],
    [[`docker-archive:${tarFile}`, "-o", tarFile], /is the input docker-archive:/],
    [
      [`oci:${layout}:latest`, "-o", join(layout, "index.json")],
      /is inside the input oci:.*refusing to write into it/,
    ],
    [[`oci:${layout}`, "-o", join(layout, "blobs", "new.cpio")], /is inside the input oci:/],
    [[`dir:${root}`, "-o", join(root, "bin", "out.cpio")], /is inside the input dir:/],
    [[`dir:${root}`, "-o", join(root, "out.cpio")], /is inside the input dir:/],
    [[`dir:${work}/inputs/../inputs`, "-o", join(root, "x.cpio")], /is inside the input dir:/],
    [[`dir:${root}`, "--add", `${tarFile}:/x`, "-o", tarFile], /is the input --add /],
    [[`dir:${root}`, "--minimize", "trace", "--profile", profile, "-o", profile], /is the input --profile/],
    // The sidecar counts too: OUT.why must not be an input either.
    [
      [`tar:${tarFile}`, "-o", tarFile.replace(/\.tar$/, ".tar.why").slice(0, -4)],
      /rootfs\.tar is the input/,
    ],
  ];
  for (const [args, pattern] of cases) {
    const r = await runCli(["build", ...args, "--entrypoint", "/bin/app"]);
    assertOneLine(r, new RegExp(`^slimroot: -o .*${pattern.source}`));
  }
  assert.deepEqual(await readFile(tarFile), tarBytes);
  assert.deepEqual(await readFile(join(layout, "index.json")), index);
  assert.deepEqual((await readdir(root)).sort(), ["bin"]);
  assert.deepEqual(await readdir(join(root, "bin")), ["app"]);
  const trace = await runCli(["trace", `dir:${root}`, "--entrypoint", "/bin/app", "-o", join(root, "p")]);
  assertOneLine(trace, /^slimroot: -o .*is inside the input dir:/);
});

test("-o on a character device is refused and the node stays", async (t) => {
  if (process.getuid?.() !== 0) return t.skip("needs root to make a device node (mknod)");
  const root = await rootDir("devices");
  // A null device of our own, never the host's /dev/null: a build that got this wrong replaced it.
  const dev = join(work, "null-device");
  execFileSync("mknod", ["-m", "666", dev, "c", "1", "3"]);
  assertOneLine(
    await runCli(["build", `dir:${root}`, "--entrypoint", "/bin/app", "-o", dev]),
    /^slimroot: -o .*null-device: is a character device; give the path of a file$/,
  );
  assert.ok(statSync(dev).isCharacterDevice());
  assert.equal(existsSync(`${dev}.why`), false);
});

test("-o on a directory or in a missing directory: one line at once", async () => {
  const root = await rootDir("outdirs");
  const args = ["build", `dir:${root}`, "--entrypoint", "/bin/app", "-o"];
  const dir = await mkdtemp(join(work, "outdir-"));
  assertOneLine(
    await runCli([...args, dir]),
    /^slimroot: -o .*outdir-\w+: is a directory; give the path of a file$/,
  );
  assertOneLine(
    await runCli([...args, join(dir, "no", "x.cpio")]),
    /^slimroot: -o .*: no such directory .*outdir-\w+\/no$/,
  );
  await mkdir(join(dir, "x.cpio.why"));
  assertOneLine(
    await runCli([...args, join(dir, "x.cpio")]),
    /^slimroot: -o .*x\.cpio: .*x\.cpio\.why is a directory/,
  );
  assert.deepEqual(await readdir(dir), ["x.cpio.why"]);
});

test("the image and its .why are replaced together: a failure before the second leaves the old pair", async () => {
  const root = await rootDir("pair");
  const outDir = await mkdtemp(join(work, "pair-"));
  const out = join(outDir, "app.cpio");
  await writeFile(out, PREVIOUS);
  await writeFile(`${out}.why`, "old why\n");
  await assert.rejects(
    build({
      source: `dir:${root}`,
      output: out,
      compression: "none",
      minimize: "none",
      overrides: { entrypoint: "/bin/app" },
      additions: [],
      epoch: 0,
      // Something takes the .why's place while the image is being checked.
      verify: async () => {
        await rm(`${out}.why`);
        await mkdir(`${out}.why`);
      },
    }),
    /app\.cpio\.why: not a regular file/,
  );
  assert.equal(await readFile(out, "utf8"), PREVIOUS);
  assert.deepEqual((await readdir(outDir)).sort(), ["app.cpio", "app.cpio.why"], "no temp files");
});

test("--add and bin: mistakes: one line naming the flag or the source, exit 1", async () => {
  const root = await rootDir("adds");
  const out = join(work, "adds.cpio");
  const base = ["build", `dir:${root}`, "--entrypoint", "/bin/app", "-o", out];
  for (const dest of ["/../etc/x", "/opt/../../x", "/a/.."])
    assertOneLine(
      await runCli([...base, "--add", `${root}/bin/app:${dest}`]),
      new RegExp(`^slimroot: --add .*:${dest.replace(/\./g, "\\.")}: DST must not contain ".."`),
    );
  assertOneLine(
    await runCli(["build", `bin:${root}`, "-o", out]),
    /^slimroot: bin:.*adds: is a directory, not an executable$/,
  );
  assert.equal(existsSync(out), false);
});

/** The CLI run as nobody (uid 65534), for files root could always read. */
function runAsNobody(args: string[]): Promise<CliResult> {
  const child = spawn(
    "setpriv",
    [
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      process.execPath,
      "--import",
      "tsx",
      join(REPO, "src", "cli", "main.ts"),
      ...args,
    ],
    { cwd: REPO, env: { ...process.env, HOME: "/nonexistent" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

test("an unreadable dir: or --add file is reported as unreadable, not as the output", async (t) => {
  if (process.getuid?.() !== 0) return t.skip("needs root to run the CLI as another user (setpriv)");
  const shared = await mkdtemp(join(work, "nobody-"));
  await chmod(work, 0o755);
  await chmod(shared, 0o777);
  const root = join(shared, "root");
  await mkdir(root, { mode: 0o755 });
  await writeFile(join(root, "secret"), "s", { mode: 0o000 });
  const outDir = join(shared, "out");
  await mkdir(outDir);
  await chmod(outDir, 0o777);
  const out = join(outDir, "x.cpio");
  const fromDir = await runAsNobody(["build", `dir:${root}`, "--entrypoint", "/secret", "-o", out]);
  assertOneLine(fromDir, /^slimroot: .*root\/secret: cannot read \(permission denied\)$/);
  const empty = join(shared, "empty");
  await mkdir(empty, { mode: 0o755 });
  const added = await runAsNobody([
    "build",
    `dir:${empty}`,
    "--entrypoint",
    "/x",
    "--add",
    `${join(root, "secret")}:/x`,
    "-o",
    out,
  ]);
  assertOneLine(added, /^slimroot: --add .*secret:\/x: .*secret: cannot read \(permission denied\)$/);
  assert.deepEqual(await readdir(outDir), []);
});

const MAIN = join(REPO, "src", "cli", "main.ts");

test("slimroot inspect FILE | head ends quietly (EPIPE), for every output form", async () => {
  const root = join(work, "many");
  await mkdir(root);
  // Enough entries that the listing is far more than a pipe holds.
  await Promise.all(Array.from({ length: 3000 }, (_, i) => writeFile(join(root, `file-${i}`), "")));
  const image = join(work, "many.cpio");
  const b = await runCli(["build", `dir:${root}`, "--entrypoint", "/file-0", "-o", image]);
  assert.equal(b.code, 0, b.stderr);
  const cmds = [
    ["inspect", image],
    ["inspect", "--json", image],
    ["inspect", "--why", image],
  ];
  for (const args of cmds) {
    const quoted = [process.execPath, "--import", "tsx", MAIN, ...args].map((a) => `'${a}'`).join(" ");
    const err = join(work, "epipe.err");
    const out = execFileSync(
      "bash",
      ["-c", `${quoted} 2>'${err}' | head -n 2 >/dev/null; echo "\${PIPESTATUS[0]}"`],
      {
        cwd: REPO,
        encoding: "utf8",
      },
    );
    assert.equal(await readFile(err, "utf8"), "", `no stack trace for ${args.join(" ")}`);
    assert.equal(out.trim(), "141", "ended as SIGPIPE ends other tools");
  }
});

for (const [signal, status] of [
  ["SIGHUP", 129],
  ["SIGQUIT", 131],
] as const) {
  test(`${signal} during a build removes the spool and the temp output, and leaves the old output`, async () => {
    const tmp = await mkdtemp(join(work, "tmp-"));
    const outDir = await mkdtemp(join(work, "hup-"));
    const out = join(outDir, "big.cpio.xz");
    await writeFile(out, PREVIOUS);
    const layout = join(work, `${signal}-layout`);
    const { randomBytes } = await import("node:crypto");
    await writeOciLayout(layout, {
      layers: [
        await tarOf(Array.from({ length: 40 }, (_, i) => ({ name: `f${i}`, body: randomBytes(1 << 20) }))),
      ],
      gzip: false,
    });
    const running = startCli(["build", `oci:${layout}:latest`, "-o", out, "--entrypoint", "/f0"], {
      TMPDIR: tmp,
    });
    // Wait (bounded) until the compressed output is being written: spool and temp output both exist.
    const deadline = Date.now() + 120_000;
    const temps = async () => (await readdir(outDir)).filter((f) => f.endsWith(".tmp"));
    while ((await temps()).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal((await temps()).length, 1, `the build is writing its output (${running.stderr})`);
    assert.ok(
      (await readdir(tmp)).some((f) => f.startsWith("slimroot-spool-")),
      "and has its spool",
    );
    running.child.kill(signal);
    assert.equal(await running.exited, status, running.stderr);
    assert.equal(await readFile(out, "utf8"), PREVIOUS);
    assert.deepEqual(await readdir(outDir), ["big.cpio.xz"], "no temp output");
    assert.deepEqual(
      (await readdir(tmp)).filter((f) => f.startsWith("slimroot-")),
      [],
      "no spool",
    );
  });
}

test("the image's metadata records the compressor and its version, and the cpio's sha256", async () => {
  const root = await rootDir("repro");
  const { createHash } = await import("node:crypto");
  const { gunzipSync } = await import("node:zlib");
  const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  const built: Record<string, { file: string; build: { compressor: string; cpioSha256: string } }> = {};
  for (const kind of ["none", "gzip", "xz", "zstd", "lz4"]) {
    const file = join(work, `repro.${kind}`);
    const b = await runCli([
      "build",
      `dir:${root}`,
      "--entrypoint",
      "/bin/app",
      "--compress",
      kind,
      "-o",
      file,
    ]);
    assert.equal(b.code, 0, b.stderr);
    const info = JSON.parse((await runCli(["inspect", "--json", file])).stdout);
    built[kind] = { file, build: info.build };
    const text = (await runCli(["inspect", file])).stdout;
    assert.match(text, new RegExp(`^built: compressor ${kind}`, "m"));
  }
  const cpio = await readFile(built.none!.file);
  // The cpio is the same whatever compresses it, and its recorded sha256 is the real one.
  for (const kind of Object.keys(built)) assert.equal(built[kind]!.build.cpioSha256, sha256(cpio), kind);
  assert.deepEqual(gunzipSync(await readFile(built.gzip!.file)), cpio);
  assert.match(
    built.gzip!.build.compressor,
    new RegExp(`zlib ${process.versions.zlib.replace(/\./g, "\\.")} \\(Node ${process.version}\\)`),
  );
  for (const tool of ["xz", "zstd", "lz4"]) {
    const version = execFileSync(tool, ["--version"], { encoding: "utf8" })
      .split("\n")[0]!
      .replace(/^\*+\s*|\s*\*+$/g, "");
    assert.ok(
      built[tool]!.build.compressor.includes(version),
      `${tool}: ${built[tool]!.build.compressor} names ${version}`,
    );
  }
  // Same inputs, same compressor build: the same bytes.
  const again = join(work, "repro-again.gz");
  assert.equal((await runCli(["build", `dir:${root}`, "--entrypoint", "/bin/app", "-o", again])).code, 0);
  assert.deepEqual(await readFile(again), await readFile(built.gzip!.file));
});

test("names from an image never reach the terminal as control sequences (inspect, errors)", async () => {
  const evil = "etc/\x1b]0;owned\x07\x1b[2Jname";
  const tarFile = join(work, "escapes.tar");
  await writeFile(
    tarFile,
    await tarOf([
      { name: evil, body: "x" },
      { name: "bin/app", body: "#!/bin/sh\n", mode: 0o755 },
    ]),
  );
  const image = join(work, "escapes.cpio");
  const b = await runCli(["build", `tar:${tarFile}`, "--entrypoint", "/bin/app", "-o", image]);
  assert.equal(b.code, 0, b.stderr);
  const listing = await runCli(["inspect", image]);
  assert.equal(listing.code, 0, listing.stderr);
  const controls = [...listing.stdout].filter((c) => c !== "\n" && (c < " " || c === "\x7f"));
  assert.deepEqual(controls, [], "no raw control characters");
  assert.ok(listing.stdout.includes("/etc/\\x1b]0;owned\\x07\\x1b[2Jname"), listing.stdout);
  // An error naming a hostile entry prints it escaped too.
  const bad = join(work, "escapes-bad.tar");
  await writeFile(bad, await tarOf([{ name: "../\x1b[2Jx", body: "x" }]));
  const r = await runCli(["build", `tar:${bad}`, "--entrypoint", "/x", "-o", join(work, "bad.cpio")]);
  assertOneLine(r, /\\x1b\[2Jx/);
  assert.ok(!r.stderr.includes("\x1b"), "no raw escape in the error");
});

test("slimroot run IMAGE | head ends quietly, with no QEMU and no scratch left", {
  timeout: 300_000,
}, async () => {
  const { fetchKernel } = await import("../src/kernel/fetch.js");
  await fetchKernel({ arch: "amd64" });
  const tmp = await mkdtemp(join(work, "run-tmp-"));
  const src = join(work, "chatty.c");
  await writeFile(
    src,
    '#include <stdio.h>\nint main(void) { for (int i = 0; i < 200000; i++) printf("line %d\\n", i); return 0; }\n',
  );
  const exe = join(work, "chatty");
  execFileSync("gcc", ["-O2", "-static", "-o", exe, src]);
  const image = join(tmp, "chatty.cpio.gz");
  assert.equal((await runCli(["build", `bin:${exe}`, "-o", image])).code, 0);
  const quoted = [process.execPath, "--import", "tsx", MAIN, "run", image, "--timeout", "240s"]
    .map((a) => `'${a}'`)
    .join(" ");
  const err = join(work, "run-epipe.err");
  const out = execFileSync(
    "bash",
    ["-c", `${quoted} 2>'${err}' | head -n 1 >/dev/null; echo "\${PIPESTATUS[0]}"`],
    {
      cwd: REPO,
      encoding: "utf8",
      env: { ...process.env, TMPDIR: tmp },
    },
  );
  assert.equal(await readFile(err, "utf8"), "", "nothing on stderr");
  assert.equal(out.trim(), "141");
  assert.deepEqual(await qemusUsing(tmp), [], "no QEMU left");
  assert.deepEqual(
    (await readdir(tmp)).filter((f) => f.startsWith("slimroot-run-")),
    [],
    "no scratch left",
  );
});

test("inspect --html and bench --json/--svg: never the input, never a directory, said at once", async () => {
  const root = await rootDir("pages");
  const image = join(work, "pages.cpio");
  assert.equal((await runCli(["build", `dir:${root}`, "--entrypoint", "/bin/app", "-o", image])).code, 0);
  const before = await readFile(image);
  assertOneLine(
    await runCli(["inspect", image, "--html", image]),
    /^slimroot: --html .*pages\.cpio is the input .*refusing to overwrite it$/,
  );
  assertOneLine(
    await runCli(["inspect", image, "--html", `${image}.why`]),
    /^slimroot: --html .*pages\.cpio\.why is the input/,
  );
  assertOneLine(
    await runCli(["inspect", image, "--html", work]),
    /^slimroot: --html .*: is a directory; give the path of a file$/,
  );
  assert.deepEqual(await readFile(image), before);
  assertOneLine(
    await runCli(["bench", `dir:${root}`, "--probe", "http:80/", "--json", work]),
    /^slimroot: --json .*: is a directory; give the path of a file$/,
  );
  assertOneLine(
    await runCli(["bench", `dir:${root}`, "--probe", "http:80/", "--svg", join(root, "chart.svg")]),
    /^slimroot: --svg .*chart\.svg is inside the input dir:/,
  );
});
