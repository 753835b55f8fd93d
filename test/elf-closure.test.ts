/**
 * The closure resolver against real objects and the real loader: tiny shared objects and
 * executables built with gcc into a scratch root, a real ld.so.cache from ldconfig, and for
 * x86_64 the host's glibc copied in so `ld.so` itself (LD_TRACE_LOADED_OBJECTS, run under
 * chroot) says what it loads. Then host binaries against ldd, and nginx in a Debian image.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, type TestContext, test } from "node:test";
import { type Closure, type ClosureOptions, resolveClosure } from "../src/elf/closure.js";
import { DT_RUNPATH, EM_AARCH64, EM_X86_64, PT_DYNAMIC, parseElf } from "../src/elf/elf.js";
import { foundAs } from "../src/elf/testing.js";
import { addHostPath } from "../src/tree/host.js";
import { hostFs, type ImageFs, treeFs } from "../src/tree/image-fs.js";
import { Tree } from "../src/tree/tree.js";
import { nginxFixture } from "./support/fixtures.js";

const MA = "/usr/lib/x86_64-linux-gnu";
const amd64: ClosureOptions = { machine: EM_X86_64, elfClass: 2 };

let work: string;
let root: string;
/** Whether ld.so can be run in the root (needs root, chroot, a private mount namespace). */
let canTrace = false;

const at = (p: string) => join(root, p);

function sh(cmd: string, args: string[], cwd = work): void {
  execFileSync(cmd, args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

interface LibOpts {
  /** Other objects (image paths) to link against, so they become DT_NEEDED. */
  needs?: string[];
  soname?: string | null;
  rpath?: string;
  /** RUNPATH (--enable-new-dtags) instead of RPATH. */
  runpath?: boolean;
  cc?: string;
  flags?: string[];
}

/** Builds an object with gcc at image path `path`; `exe` builds a PIE executable instead. */
function build(path: string, opts: LibOpts & { exe?: boolean } = {}): void {
  mkdirSync(dirname(at(path)), { recursive: true });
  const src = join(work, "obj.c");
  writeFileSync(src, opts.exe ? "int main(void) { return 0; }\n" : "int f(void) { return 0; }\n");
  const soname = opts.soname === undefined ? path.split("/").pop()! : opts.soname;
  const args = [
    ...(opts.exe ? [] : ["-shared", "-fPIC"]),
    ...(soname && !opts.exe ? [`-Wl,-soname,${soname}`] : []),
    ...(opts.rpath !== undefined ? [`-Wl,-rpath,${opts.rpath}`] : []),
    opts.runpath ? "-Wl,--enable-new-dtags" : "-Wl,--disable-new-dtags",
    "-Wl,--no-as-needed",
    ...(opts.flags ?? []),
    "-o",
    at(path),
    src,
    ...(opts.needs ?? []).map((n) => (n.startsWith("/") ? at(n) : n)),
  ];
  sh(opts.cc ?? "gcc", args, root);
}

/** Rewrites one dynamic tag in place: how to give an object both DT_RPATH and DT_RUNPATH. */
function retag(path: string, from: bigint, to: bigint): void {
  const buf = readFileSync(at(path));
  const dyn = parseElf(buf).programHeaders.find((p) => p.type === PT_DYNAMIC)!;
  let done = false;
  for (let p = dyn.offset; p < dyn.offset + dyn.filesz; p += 16) {
    if (buf.readBigUInt64LE(p) === from) {
      buf.writeBigUInt64LE(to, p);
      done = true;
    }
  }
  assert.ok(done, `${path} has no tag ${from}`);
  writeFileSync(at(path), buf);
}

const TRACER = `
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* /.trace -r PATH...: realpath of each. /.trace [VAR=VALUE...] -- EXE: exec EXE with the
   variables set and LD_TRACE_LOADED_OBJECTS=1, so its ld.so lists what it loads. Static, so
   nothing it does itself depends on the libraries in the root. */
int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-r") == 0) {
    for (int i = 2; i < argc; i++) { char buf[PATH_MAX]; puts(realpath(argv[i], buf) ? buf : "?"); }
    return 0;
  }
  int i = 1;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) putenv(argv[i]);
  setenv("LD_TRACE_LOADED_OBJECTS", "1", 1);
  execv(argv[i + 1], argv + i + 1);
  perror("execv");
  return 127;
}
`;

before(() => {
  work = mkdtempSync(join(tmpdir(), "slimroot-elfclosure-"));
  root = join(work, "root");
  mkdirSync(root);

  // A Debian-like merged-/usr root with the host's glibc, so its ld.so can run here.
  mkdirSync(at(MA), { recursive: true });
  mkdirSync(at("usr/lib64"), { recursive: true });
  mkdirSync(at("usr/bin"), { recursive: true });
  mkdirSync(at("proc"));
  for (const name of ["libc.so.6", "ld-linux-x86-64.so.2"])
    copyFileSync(realpathSync(`${MA}/${name}`), at(`${MA}/${name}`));
  symlinkSync("usr/lib", at("lib"));
  symlinkSync("usr/lib64", at("lib64"));
  symlinkSync("usr/bin", at("bin"));
  symlinkSync("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", at("usr/lib64/ld-linux-x86-64.so.2"));
  mkdirSync(at("etc/ld.so.conf.d"), { recursive: true });
  writeFileSync(at("etc/ld.so.conf"), "include /etc/ld.so.conf.d/*.conf\n");
  writeFileSync(at("etc/ld.so.conf.d/cached.conf"), "/opt/cached\n");

  // Same soname, different directories, to see which one each search order picks.
  for (const d of ["/opt/a", "/opt/b", "/opt/c"]) build(`${d}/libv.so.1`);
  build("/opt/a/libdeep.so.1");
  build("/opt/a/libmid.so.1", { needs: ["/opt/a/libdeep.so.1"] });
  build("/opt/a/libw.so.1");
  build("/opt/c/libw.so.1");
  build("/opt/a/librun.so.1", { needs: ["/opt/c/libw.so.1"], rpath: "/opt/c", runpath: true });
  build("/opt/b/libw2.so.1");
  build("/opt/c/libw2.so.1");
  // DT_RPATH /opt/b and DT_RUNPATH /opt/c in one object: -f makes a DT_AUXILIARY string, retagged.
  build("/opt/a/libboth.so.1", { needs: ["/opt/b/libw2.so.1"], rpath: "/opt/b", flags: ["-Wl,-f,/opt/c"] });
  retag("/opt/a/libboth.so.1", 0x7ffffffdn, BigInt(DT_RUNPATH));

  build("/usr/bin/rpath-exe", {
    exe: true,
    rpath: "/opt/a",
    needs: ["/opt/a/libv.so.1", "/opt/a/libmid.so.1"],
  });
  build("/usr/bin/runpath-exe", {
    exe: true,
    rpath: "/opt/a",
    runpath: true,
    needs: ["/opt/a/libv.so.1", "/opt/a/libmid.so.1"],
  });
  build("/usr/bin/mixed-exe", {
    exe: true,
    rpath: "/opt/a",
    needs: ["/opt/a/librun.so.1", "/opt/a/libboth.so.1"],
  });

  // $ORIGIN: the executable's real directory; a library's directory as it was opened.
  build("/opt/o/deps/libodep.so.1");
  build("/app/lib/deps/libodep.so.1");
  build("/opt/o/libo.so.1.0", {
    soname: "libo.so.1",
    needs: ["/opt/o/deps/libodep.so.1"],
    rpath: "$ORIGIN/deps",
  });
  symlinkSync("../../opt/o/libo.so.1.0", at("app/lib/libo.so.1"));
  build("/app/bin/tool", {
    exe: true,
    rpath: "$ORIGIN/../lib",
    runpath: true,
    needs: ["/app/lib/libo.so.1"],
  });
  symlinkSync("/app/bin/tool", at("usr/bin/tool"));

  // Wrong architectures first on the path, the right one last.
  build("/opt/arm/libm1.so.1", { cc: "aarch64-linux-gnu-gcc", flags: ["-nostdlib"] });
  build("/opt/i386/libm1.so.1", { flags: ["-m32", "-nostdlib"] });
  build("/opt/x86/libm1.so.1");
  build("/usr/bin/arch-exe", {
    exe: true,
    rpath: "/opt/arm:/opt/i386:/opt/x86",
    needs: ["/opt/x86/libm1.so.1"],
  });

  // Only the cache knows /opt/cached; liblate arrives after ldconfig ran.
  build("/opt/cached/libcached.so.1");
  build("/usr/bin/cache-exe", { exe: true, needs: ["/opt/cached/libcached.so.1"] });
  build(`${MA}/libx.so.1.2.3`, { soname: "libx.so.1" });
  symlinkSync("libx.so.1.2.3", at(`${MA}/libx.so.1`));
  build("/usr/lib/libnd.so.1");
  build("/usr/bin/nodeflib-exe", {
    exe: true,
    rpath: "/lib/x86_64-linux-gnu",
    flags: ["-Wl,-z,nodefaultlib"],
    needs: ["/usr/lib/libnd.so.1", `${MA}/libx.so.1`],
  });
  sh("ldconfig", ["-X", "-r", root]);
  build("/opt/cached/liblate.so.1");
  build("/usr/bin/late-exe", { exe: true, needs: ["/opt/cached/liblate.so.1", `${MA}/libx.so.1`] });

  // Missing: linked, then gone. A DT_NEEDED with a slash (no soname, linked by relative path).
  build("/opt/gone/libgone.so.1");
  build("/usr/bin/missing-exe", { exe: true, needs: ["/opt/gone/libgone.so.1", `${MA}/libx.so.1`] });
  unlinkSync(at("opt/gone/libgone.so.1"));
  build("/opt/p/libp.so", { soname: null });
  build("/usr/bin/slash-exe", { exe: true, needs: ["opt/p/libp.so"] });

  // aarch64: the cross toolchain's glibc, and an x86_64 library earlier on the path.
  const cross = "/usr/aarch64-linux-gnu/lib";
  mkdirSync(at("usr/lib/aarch64-linux-gnu"), { recursive: true });
  copyFileSync(realpathSync(`${cross}/libc.so.6`), at("usr/lib/aarch64-linux-gnu/libc.so.6"));
  copyFileSync(
    realpathSync(`${cross}/ld-linux-aarch64.so.1`),
    at("usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1"),
  );
  symlinkSync("aarch64-linux-gnu/ld-linux-aarch64.so.1", at("usr/lib/ld-linux-aarch64.so.1"));
  build("/opt/armlib/libm1.so.1", { cc: "aarch64-linux-gnu-gcc" });
  build("/usr/bin/arm-exe", {
    exe: true,
    cc: "aarch64-linux-gnu-gcc",
    rpath: "/opt/x86:/opt/armlib",
    needs: ["/opt/armlib/libm1.so.1"],
  });

  writeFileSync(join(work, "trace.c"), TRACER);
  sh("gcc", ["-static", "-O", "-o", at(".trace"), join(work, "trace.c")]);
  canTrace =
    process.getuid?.() === 0 &&
    spawnSync("unshare", [
      "-m",
      "sh",
      "-c",
      'mount -t proc proc "$1/proc" && chroot "$1" /.trace -r /',
      "sh",
      root,
    ]).status === 0;
});

after(() => rmSync(work, { recursive: true, force: true }));

/** What the real ld.so loads for `exe` in the root: real paths, and names it did not find. */
function ldTrace(exe: string, env: string[] = []): { files: Set<string>; missing: Set<string> } {
  const run = spawnSync(
    "unshare",
    [
      "-m",
      "sh",
      "-c",
      'r=$1; shift; mount -t proc proc "$r/proc" && exec chroot "$r" /.trace "$@"',
      "sh",
      root,
      ...env,
      "--",
      exe,
    ],
    { encoding: "utf8" },
  );
  assert.equal(run.status, 0, run.stderr);
  const paths: string[] = [];
  const missing = new Set<string>();
  for (const line of run.stdout.split("\n")) {
    // "\tname => not found", "\tname => path (0x...)", or "\tpath (0x...)" when name is the path.
    const gone = /^\t(\S+) => not found/.exec(line);
    const found = /^\t(?:\S+ => )?(\S+) \(0x/.exec(line);
    if (gone) missing.add(gone[1]!);
    else if (found && !found[1]!.startsWith("linux-vdso")) paths.push(found[1]!);
  }
  const real = execFileSync("chroot", [root, "/.trace", "-r", ...paths], { encoding: "utf8" })
    .trim()
    .split("\n");
  return { files: new Set(paths.length ? real : []), missing };
}

/** The regular files of a closure other than the roots and loader configuration: what ld.so maps. */
function loaded(fs: ImageFs, c: Closure): Set<string> {
  const config = new Set(["/etc/ld.so.cache", "/etc/ld.so.preload"]);
  return new Set(
    [...c.files]
      .filter(([p, why]) => why !== "root" && !config.has(p) && fs.lstat(p)?.kind === "file")
      .map(([p]) => p),
  );
}

/** Names the closure reports missing, from its warnings. */
function missingOf(c: Closure): Set<string> {
  return new Set(
    c.warnings.map((w) => /^(\S+) needed by .*: not found/.exec(w)?.[1]).filter((n) => n !== undefined),
  );
}

let tree: ImageFs | undefined;
async function treeOfRoot(): Promise<ImageFs> {
  if (!tree) {
    const t = new Tree();
    await addHostPath(t, root, "/");
    tree = treeFs(t);
  }
  return tree;
}

/** Resolves over the host directory and over a Tree of it (they must agree), and returns the first. */
async function resolve(roots: string[], env?: string[], opts = amd64): Promise<Closure> {
  const c = await resolveClosure(hostFs(root), roots, { ...opts, env });
  const t = await resolveClosure(await treeOfRoot(), roots, { ...opts, env });
  assert.deepEqual([...t.files], [...c.files]);
  assert.deepEqual(t.warnings, c.warnings);
  return c;
}

/**
 * Asserts, as a subtest of its own, that the closure loads exactly what ld.so loads; where
 * ld.so cannot run here that subtest is reported skipped, never passed unchecked.
 */
async function sameAsLdSo(t: TestContext, c: Closure, exe: string, env: string[] = []): Promise<void> {
  await t.test(`ld.so loads the same for ${exe}`, (st) => {
    if (!canTrace) return st.skip("needs root, unshare -m and chroot");
    const real = ldTrace(exe, env);
    const ours = loaded(hostFs(root), c);
    assert.deepEqual([...ours].sort(), [...real.files].sort(), `${exe}: loaded files`);
    assert.deepEqual([...missingOf(c)].sort(), [...real.missing].sort(), `${exe}: missing`);
  });
}

test("the loader can be traced in the scratch root (or cross-checks are skipped)", (t) => {
  if (!canTrace) t.skip("needs root, unshare -m and chroot");
  else assert.ok(ldTrace("/usr/bin/rpath-exe").files.size > 0);
});

test("RPATH beats LD_LIBRARY_PATH and is inherited by indirect dependencies", async (t) => {
  const env = ["LD_LIBRARY_PATH=/opt/b"];
  const c = await resolve(["/usr/bin/rpath-exe"], env);
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(foundAs(c, "libv.so.1"), ["/opt/a/libv.so.1"]);
  assert.deepEqual(foundAs(c, "libdeep.so.1"), ["/opt/a/libdeep.so.1"]);
  await sameAsLdSo(t, c, "/usr/bin/rpath-exe", env);
});

test("RUNPATH comes after LD_LIBRARY_PATH and is not inherited", async (t) => {
  const env = ["LD_LIBRARY_PATH=/opt/b"];
  const c = await resolve(["/usr/bin/runpath-exe"], env);
  assert.deepEqual(foundAs(c, "libv.so.1"), ["/opt/b/libv.so.1"]);
  assert.deepEqual(foundAs(c, "libmid.so.1"), ["/opt/a/libmid.so.1"]);
  assert.deepEqual(c.warnings, ["libdeep.so.1 needed by /opt/a/libmid.so.1: not found"]);
  await sameAsLdSo(t, c, "/usr/bin/runpath-exe", env);
});

test("a loader with RUNPATH ignores its loaders' RPATH and its own", async (t) => {
  const c = await resolve(["/usr/bin/mixed-exe"]);
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(foundAs(c, "libw.so.1"), ["/opt/c/libw.so.1"]);
  assert.deepEqual(foundAs(c, "libw2.so.1"), ["/opt/c/libw2.so.1"]);
  await sameAsLdSo(t, c, "/usr/bin/mixed-exe");
});

test("$ORIGIN of an executable run through a symlink, and of a library opened through one", async (t) => {
  const c = await resolve(["/usr/bin/tool"]);
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(foundAs(c, "libo.so.1"), ["/opt/o/libo.so.1.0"]);
  assert.deepEqual(foundAs(c, "libodep.so.1"), ["/app/lib/deps/libodep.so.1"]);
  for (const link of [
    "/usr/bin/tool",
    "/app/lib/libo.so.1",
    "/lib64",
    "/usr/lib64/ld-linux-x86-64.so.2",
    "/lib",
  ])
    assert.match(c.files.get(link) ?? "", /^symlink to /, link);
  await sameAsLdSo(t, c, "/usr/bin/tool");
});

test("libraries of another machine or class earlier on the path are passed over", async (t) => {
  const c = await resolve(["/usr/bin/arch-exe"]);
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(foundAs(c, "libm1.so.1"), ["/opt/x86/libm1.so.1"]);
  await sameAsLdSo(t, c, "/usr/bin/arch-exe");
});

test("ld.so.cache from ldconfig finds a library in a directory only ld.so.conf lists", async (t) => {
  const c = await resolve(["/usr/bin/cache-exe"]);
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(foundAs(c, "libcached.so.1"), ["/opt/cached/libcached.so.1"]);
  assert.equal(c.files.get("/etc/ld.so.cache"), "ld.so's library cache");
  await sameAsLdSo(t, c, "/usr/bin/cache-exe");
});

test("a library added after ldconfig ran is missing, with a hint", async (t) => {
  const c = await resolve(["/usr/bin/late-exe"]);
  assert.deepEqual(c.warnings, [
    "liblate.so.1 needed by /usr/bin/late-exe: not found (/opt/cached/liblate.so.1 exists and /opt/cached is in /etc/ld.so.conf, but /etc/ld.so.cache does not list it: ldconfig was not run)",
  ]);
  await sameAsLdSo(t, c, "/usr/bin/late-exe");
});

test("DF_1_NODEFLIB skips the default directories and their cache entries", async (t) => {
  const c = await resolve(["/usr/bin/nodeflib-exe"]);
  assert.deepEqual(c.warnings, ["libnd.so.1 needed by /usr/bin/nodeflib-exe: not found"]);
  await sameAsLdSo(t, c, "/usr/bin/nodeflib-exe");
});

test("a missing library is a warning naming it and its needer; symlink chains are kept", async (t) => {
  const c = await resolve(["/usr/bin/missing-exe"]);
  assert.deepEqual(c.warnings, ["libgone.so.1 needed by /usr/bin/missing-exe: not found"]);
  assert.equal(c.files.get(`${MA}/libx.so.1.2.3`), "needed by /usr/bin/missing-exe (libx.so.1)");
  assert.match(c.files.get(`${MA}/libx.so.1`) ?? "", /^symlink to libx\.so\.1\.2\.3/);
  await sameAsLdSo(t, c, "/usr/bin/missing-exe");
});

test("a DT_NEEDED with a slash is a path", async (t) => {
  const c = await resolve(["/usr/bin/slash-exe"]);
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(foundAs(c, "opt/p/libp.so"), ["/opt/p/libp.so"]);
  await sameAsLdSo(t, c, "/usr/bin/slash-exe");
});

test("LD_PRELOAD libraries are part of the closure", async (t) => {
  const env = ["LD_PRELOAD=libx.so.1"];
  const c = await resolve(["/usr/bin/cache-exe"], env);
  assert.deepEqual(foundAs(c, "libx.so.1"), [`${MA}/libx.so.1.2.3`]);
  await sameAsLdSo(t, c, "/usr/bin/cache-exe", env);
});

test("an aarch64 target passes over x86_64 libraries and finds its own glibc", async () => {
  const c = await resolve(["/usr/bin/arm-exe"], [], { machine: EM_AARCH64, elfClass: 2 });
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(foundAs(c, "libm1.so.1"), ["/opt/armlib/libm1.so.1"]);
  assert.deepEqual([...loaded(hostFs(root), c)].sort(), [
    "/opt/armlib/libm1.so.1",
    "/usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
    "/usr/lib/aarch64-linux-gnu/libc.so.6",
  ]);
  assert.ok(c.files.has("/usr/lib/ld-linux-aarch64.so.1"));
});

/** ldd's answer for a host binary, as real paths. */
function ldd(path: string): Set<string> {
  const out = execFileSync("ldd", [path], { encoding: "utf8" });
  const paths = [...out.matchAll(/^\t(?:\S+ => )?(\/\S+) \(0x/gm)].map((m) => realpathSync(m[1]!));
  return new Set(paths);
}

for (const bin of ["/usr/bin/ssh", "/usr/bin/curl"]) {
  test(`host ${bin} via hostFs("/") matches ldd`, async (t) => {
    if (!existsSync(bin)) return t.skip(`${bin} is not installed`);
    const fs = hostFs("/");
    const c = await resolveClosure(fs, [bin], amd64);
    assert.deepEqual(c.warnings, []);
    const ours = loaded(fs, c);
    assert.deepEqual([...ours].sort(), [...ldd(bin)].sort());
  });
}

test("nginx in a Debian image: the closure is what its ld.so loads", async (t) => {
  if (process.getuid?.() !== 0) return t.skip("needs root for chroot");
  const image = (await nginxFixture()).unpacked;
  const fs = hostFs(image);
  const c = await resolveClosure(fs, ["/usr/sbin/nginx"], amd64);
  assert.deepEqual(c.warnings, []);
  assert.equal(
    c.files.get("/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0.11.2"),
    "needed by /usr/sbin/nginx (libpcre2-8.so.0)",
  );
  const out = execFileSync(
    "chroot",
    [image, "/usr/bin/env", "LD_TRACE_LOADED_OBJECTS=1", "/usr/sbin/nginx"],
    {
      encoding: "utf8",
    },
  );
  const paths = [...out.matchAll(/^\t(?:\S+ => )?(\/\S+) \(0x/gm)].map((m) => m[1]!);
  const real = execFileSync("chroot", [image, "/usr/bin/realpath", ...paths], { encoding: "utf8" })
    .trim()
    .split("\n");
  const ours = loaded(fs, c);
  assert.deepEqual([...ours].sort(), real.sort());
});
