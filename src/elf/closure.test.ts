import assert from "node:assert/strict";
import { test } from "node:test";
import { type ImageFs, treeFs } from "../tree/image-fs.js";
import { bufferContent } from "../tree/spool.js";
import { Tree } from "../tree/tree.js";
import { type Closure, type ClosureOptions, defaultLibraryDirs, resolveClosure } from "./closure.js";
import { DF_1_NODEFLIB, EM_386, EM_AARCH64, EM_X86_64 } from "./elf.js";
import { buildElf, buildLdCache, type ElfSpec, foundAs } from "./testing.js";

type Entry = Buffer | string | { link: string };

function image(files: Record<string, Entry>): ImageFs {
  const tree = new Tree();
  for (const [abs, e] of Object.entries(files)) {
    const path = abs.replace(/^\/+/, "");
    const parent = path.split("/").slice(0, -1).join("/");
    tree.ensureDir(parent, 0);
    const inode =
      typeof e === "object" && !Buffer.isBuffer(e)
        ? { kind: "symlink" as const, mode: 0o777, uid: 0, gid: 0, mtime: 0, target: e.link }
        : {
            kind: "file" as const,
            // Programs and scripts are executable, other text is not (PATH lookups check).
            mode: Buffer.isBuffer(e) || e.startsWith("#!") ? 0o755 : 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            content: bufferContent(Buffer.isBuffer(e) ? e : Buffer.from(e)),
          };
    tree.set(path, { inode, layer: 0 });
  }
  return treeFs(tree);
}

const LD = "/lib64/ld-linux-x86-64.so.2";
const MA = "/usr/lib/x86_64-linux-gnu";

const lib = (soname: string, spec: ElfSpec = {}) => buildElf({ soname, ...spec });
const exe = (spec: ElfSpec = {}) =>
  buildElf({ interpreter: LD, ...spec, needed: [...(spec.needed ?? []), "libc.so.6"] });

/** A Debian-like merged-/usr glibc image. */
const glibc: Record<string, Entry> = {
  "/lib": { link: "usr/lib" },
  "/lib64": { link: "usr/lib64" },
  "/usr/lib64/ld-linux-x86-64.so.2": { link: `/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2` },
  [`${MA}/ld-linux-x86-64.so.2`]: lib("ld-linux-x86-64.so.2"),
  [`${MA}/libc.so.6`]: lib("libc.so.6", { needed: ["ld-linux-x86-64.so.2"] }),
};

const amd64: ClosureOptions = { machine: EM_X86_64, elfClass: 2 };

function closure(files: Record<string, Entry>, roots: string[], env?: string[]): Promise<Closure> {
  return resolveClosure(image({ ...glibc, ...files }), roots, { ...amd64, env });
}

test("an executable's interpreter, libraries and every symlink on the way", async () => {
  const c = await closure(
    {
      "/usr/bin/app": exe({ needed: ["libx.so.1"] }),
      [`${MA}/libx.so.1`]: { link: "libx.so.1.2.3" },
      [`${MA}/libx.so.1.2.3`]: lib("libx.so.1"),
    },
    ["/usr/bin/app"],
  );
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(Object.fromEntries(c.files), {
    "/usr/bin/app": "root",
    "/lib64": "symlink to usr/lib64, on the way to /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "/usr/lib64/ld-linux-x86-64.so.2":
      "symlink to /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2, on the way to /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "/lib": "symlink to usr/lib, on the way to /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    [`${MA}/ld-linux-x86-64.so.2`]: "interpreter of /usr/bin/app",
    [`${MA}/libx.so.1`]: `symlink to libx.so.1.2.3, on the way to ${MA}/libx.so.1.2.3`,
    [`${MA}/libx.so.1.2.3`]: "needed by /usr/bin/app (libx.so.1)",
    [`${MA}/libc.so.6`]: "needed by /usr/bin/app (libc.so.6)",
  });
});

test("libc's DT_NEEDED on ld.so is the interpreter already loaded, matched by soname", async () => {
  const files = { ...glibc };
  delete files[`${MA}/ld-linux-x86-64.so.2`];
  files["/usr/lib64/ld-linux-x86-64.so.2"] = lib("ld-linux-x86-64.so.2");
  const c = await resolveClosure(image({ ...files, "/bin/app": exe() }), ["/bin/app"], amd64);
  assert.deepEqual(c.warnings, []);
  assert.equal(c.files.get("/usr/lib64/ld-linux-x86-64.so.2"), "interpreter of /bin/app");
});

test("RPATH: the loader's and its loaders', before LD_LIBRARY_PATH", async () => {
  const files = {
    "/app": exe({ needed: ["liba.so.1"], rpath: "/rp" }),
    "/rp/liba.so.1": lib("liba.so.1", { needed: ["libb.so.1"] }),
    "/rp/libb.so.1": lib("libb.so.1"),
    "/llp/liba.so.1": lib("liba.so.1"),
    [`${MA}/libb.so.1`]: lib("libb.so.1"),
  };
  const c = await closure(files, ["/app"], ["LD_LIBRARY_PATH=/llp"]);
  assert.deepEqual(foundAs(c, "liba.so.1"), ["/rp/liba.so.1"]);
  // liba has no rpath of its own: the executable's RPATH still applies to what it needs.
  assert.deepEqual(foundAs(c, "libb.so.1"), ["/rp/libb.so.1"]);
});

test("RUNPATH: after LD_LIBRARY_PATH, and not inherited by indirect dependencies", async () => {
  const files = {
    "/app": exe({ needed: ["liba.so.1"], runpath: "/rp" }),
    "/rp/liba.so.1": lib("liba.so.1", { needed: ["libb.so.1"] }),
    "/rp/libb.so.1": lib("libb.so.1"),
    "/llp/liba.so.1": lib("liba.so.1", { needed: ["libb.so.1"] }),
  };
  let c = await closure(files, ["/app"], ["LD_LIBRARY_PATH=/llp"]);
  assert.deepEqual(foundAs(c, "liba.so.1"), ["/llp/liba.so.1"]);
  assert.deepEqual(c.warnings, ["libb.so.1 needed by /llp/liba.so.1: not found"]);
  c = await closure(files, ["/app"]);
  assert.deepEqual(foundAs(c, "liba.so.1"), ["/rp/liba.so.1"]);
  assert.deepEqual(c.warnings, ["libb.so.1 needed by /rp/liba.so.1: not found"]);
});

test("a loader with RUNPATH ignores every RPATH, its own and its loaders'", async () => {
  const files = {
    "/app": exe({ needed: ["libmid.so.1", "libboth.so.1"], rpath: "/exe-rp" }),
    "/exe-rp/libmid.so.1": lib("libmid.so.1", { needed: ["libw.so.1"], runpath: "/mid-rp" }),
    "/exe-rp/libboth.so.1": lib("libboth.so.1", {
      needed: ["libv.so.1"],
      rpath: "/both-rp",
      runpath: "/both-run",
    }),
    "/exe-rp/libw.so.1": lib("libw.so.1"),
    "/mid-rp/libw.so.1": lib("libw.so.1"),
    "/both-rp/libv.so.1": lib("libv.so.1"),
    "/both-run/libv.so.1": lib("libv.so.1"),
  };
  const c = await closure(files, ["/app"]);
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(foundAs(c, "libw.so.1"), ["/mid-rp/libw.so.1"]);
  assert.deepEqual(foundAs(c, "libv.so.1"), ["/both-run/libv.so.1"]);
});

test("ld.so.cache comes after RUNPATH and before the default directories; the cache is kept", async () => {
  const files = {
    "/app": exe({ needed: ["libc1.so.1", "libc2.so.1"], runpath: "/run" }),
    "/run/libc2.so.1": lib("libc2.so.1"),
    "/opt/cached/libc1.so.1": lib("libc1.so.1"),
    "/opt/cached/libc2.so.1": lib("libc2.so.1"),
    [`${MA}/libc1.so.1`]: lib("libc1.so.1"),
    "/etc/ld.so.cache": buildLdCache([
      { name: "libc1.so.1", path: "/opt/cached/libc1.so.1" },
      { name: "libc2.so.1", path: "/opt/cached/libc2.so.1" },
    ]),
  };
  const c = await closure(files, ["/app"]);
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(foundAs(c, "libc1.so.1"), ["/opt/cached/libc1.so.1"]);
  assert.deepEqual(foundAs(c, "libc2.so.1"), ["/run/libc2.so.1"]);
  assert.equal(c.files.get("/etc/ld.so.cache"), "ld.so's library cache");
});

test("a cache entry of the wrong architecture or a stale one falls through to the default dirs", async () => {
  const files = {
    "/app": exe({ needed: ["libq.so.1", "libr.so.1"] }),
    "/opt/arm/libq.so.1": lib("libq.so.1", { machine: EM_AARCH64 }),
    [`${MA}/libq.so.1`]: lib("libq.so.1"),
    "/usr/lib/libr.so.1": lib("libr.so.1"),
    "/etc/ld.so.cache": buildLdCache([
      { name: "libq.so.1", path: "/opt/arm/libq.so.1" },
      { name: "libr.so.1", path: "/gone/libr.so.1" },
    ]),
  };
  const c = await closure(files, ["/app"]);
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(foundAs(c, "libq.so.1"), [`${MA}/libq.so.1`]);
  assert.deepEqual(foundAs(c, "libr.so.1"), ["/usr/lib/libr.so.1"]);
  assert.equal(c.files.has("/etc/ld.so.cache"), false);
});

test("files of another class or machine are passed over; other non-ELF files stop the search", async () => {
  const files = {
    "/app": exe({ needed: ["libm1.so.1", "libm2.so.1"], rpath: "/a:/b:/c" }),
    "/a/libm1.so.1": lib("libm1.so.1", { machine: EM_AARCH64 }),
    "/b/libm1.so.1": lib("libm1.so.1", { machine: EM_386, elfClass: 1 }),
    "/c/libm1.so.1": lib("libm1.so.1"),
    "/a/libm2.so.1": "INPUT(-lfoo)\n",
    "/b/libm2.so.1": lib("libm2.so.1"),
  };
  const c = await closure(files, ["/app"]);
  assert.deepEqual(foundAs(c, "libm1.so.1"), ["/c/libm1.so.1"]);
  assert.deepEqual(foundAs(c, "libm2.so.1"), []);
  assert.deepEqual(c.warnings, ["libm2.so.1 needed by /app: /a/libm2.so.1: not an ELF file"]);
});

test("$ORIGIN: the executable's real directory, a library's directory as opened", async () => {
  const files = {
    "/usr/bin/tool": { link: "/app/bin/tool" },
    "/app/bin/tool": exe({ needed: ["libo.so.1"], runpath: "$ORIGIN/../lib" }),
    "/app/lib/libo.so.1": { link: "../../opt/o/libo.so.1.0" },
    // biome-ignore lint/suspicious/noTemplateCurlyInString: ld.so's own ${NAME} syntax
    "/opt/o/libo.so.1.0": lib("libo.so.1", { needed: ["libdep.so.1"], rpath: "${ORIGIN}/deps" }),
    "/app/lib/deps/libdep.so.1": lib("libdep.so.1"),
    "/opt/o/deps/libdep.so.1": lib("libdep.so.1"),
  };
  const c = await closure(files, ["/usr/bin/tool"]);
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(foundAs(c, "libo.so.1"), ["/opt/o/libo.so.1.0"]);
  assert.equal(
    c.files.get("/app/lib/libo.so.1"),
    "symlink to ../../opt/o/libo.so.1.0, on the way to /opt/o/libo.so.1.0",
  );
  assert.deepEqual(foundAs(c, "libdep.so.1"), ["/app/lib/deps/libdep.so.1"]);
  assert.equal(c.files.get("/usr/bin/tool"), "symlink to /app/bin/tool, on the way to /app/bin/tool");
});

test("$LIB follows where the interpreter lives, $PLATFORM is the machine", async () => {
  const files = {
    "/app": exe({ needed: ["libp.so.1", "libl.so.1"], runpath: "/p/$PLATFORM:/l/$LIB:/$FOO" }),
    "/p/x86_64/libp.so.1": lib("libp.so.1"),
    "/l/lib/x86_64-linux-gnu/libl.so.1": lib("libl.so.1"),
    "/l/lib64/libl.so.1": lib("libl.so.1"),
  };
  let c = await closure(files, ["/app"]);
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(foundAs(c, "libp.so.1"), ["/p/x86_64/libp.so.1"]);
  assert.deepEqual(foundAs(c, "libl.so.1"), ["/l/lib/x86_64-linux-gnu/libl.so.1"]);
  // A Fedora-style layout: ld.so in /usr/lib64.
  const fedora = {
    "/lib64": { link: "usr/lib64" },
    "/usr/lib64/ld-linux-x86-64.so.2": lib("ld-linux-x86-64.so.2"),
    "/usr/lib64/libc.so.6": lib("libc.so.6"),
  };
  c = await resolveClosure(image({ ...fedora, ...files }), ["/app"], amd64);
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(foundAs(c, "libl.so.1"), ["/l/lib64/libl.so.1"]);
});

test("names with a slash are paths (relative ones from /), with $ORIGIN expanded", async () => {
  const files = {
    "/opt/bin/app": exe({ needed: ["opt/p/libp.so", "$ORIGIN/../q/libq.so", "/abs/libr.so"] }),
    "/opt/p/libp.so": lib("libp.so"),
    "/opt/q/libq.so": lib("libq.so"),
  };
  const c = await closure(files, ["/opt/bin/app"]);
  assert.deepEqual(foundAs(c, "opt/p/libp.so"), ["/opt/p/libp.so"]);
  assert.deepEqual(foundAs(c, "$ORIGIN/../q/libq.so"), ["/opt/q/libq.so"]);
  assert.deepEqual(c.warnings, ["/abs/libr.so needed by /opt/bin/app: not found"]);
});

test("DF_1_NODEFLIB: no default directories, no cache entries inside them", async () => {
  const files = {
    "/app": exe({
      needed: ["libnd.so.1", "libopt.so.1"],
      flags1: DF_1_NODEFLIB,
      rpath: "/lib/x86_64-linux-gnu",
    }),
    "/usr/lib/libnd.so.1": lib("libnd.so.1"),
    "/opt/c/libopt.so.1": lib("libopt.so.1"),
    "/etc/ld.so.cache": buildLdCache([
      { name: "libnd.so.1", path: "/usr/lib/libnd.so.1" },
      { name: "libopt.so.1", path: "/opt/c/libopt.so.1" },
    ]),
  };
  const c = await closure(files, ["/app"]);
  assert.deepEqual(foundAs(c, "libopt.so.1"), ["/opt/c/libopt.so.1"]);
  assert.deepEqual(c.warnings, ["libnd.so.1 needed by /app: not found"]);
});

test("a missing library names itself and its needer, with a hint when ldconfig was not rerun", async () => {
  const files = {
    "/usr/bin/x": exe({ needed: ["libgone.so.1", "liblate.so.2"] }),
    "/etc/ld.so.conf": "include /etc/ld.so.conf.d/*.conf\n",
    "/etc/ld.so.conf.d/late.conf": "/opt/late\n",
    "/opt/late/liblate.so.2": lib("liblate.so.2"),
  };
  const c = await closure(files, ["/usr/bin/x"]);
  assert.deepEqual(c.warnings, [
    "libgone.so.1 needed by /usr/bin/x: not found",
    "liblate.so.2 needed by /usr/bin/x: not found (/opt/late/liblate.so.2 exists and /opt/late is in /etc/ld.so.conf, but /etc/ld.so.cache does not list it: ldconfig was not run)",
  ]);
  assert.equal(c.files.has("/opt/late/liblate.so.2"), false);
});

test("an object whose names lie past the part read first is read in full", async () => {
  const files = {
    "/app": exe({ needed: ["libbig.so.1"] }),
    [`${MA}/libbig.so.1`]: lib("libbig.so.1", { needed: ["libsmall.so.1"], pad: 5 << 20 }),
    [`${MA}/libsmall.so.1`]: lib("libsmall.so.1"),
  };
  const c = await closure(files, ["/app"]);
  assert.deepEqual(c.warnings, []);
  assert.equal(c.files.get(`${MA}/libsmall.so.1`), `needed by ${MA}/libbig.so.1 (libsmall.so.1)`);
});

test("one file under two names is loaded once, both paths kept", async () => {
  const files = {
    "/app": exe({ needed: ["libx.so.1", "libx.so"] }),
    [`${MA}/libx.so`]: { link: "libx.so.1" },
    [`${MA}/libx.so.1`]: { link: "libx.so.1.0" },
    [`${MA}/libx.so.1.0`]: lib("libx.so.1", { needed: ["liby.so.1"] }),
    [`${MA}/liby.so.1`]: lib("liby.so.1"),
  };
  const c = await closure(files, ["/app"]);
  assert.deepEqual(c.warnings, []);
  assert.ok(c.files.has(`${MA}/libx.so`));
  assert.ok(c.files.has(`${MA}/libx.so.1`));
  assert.equal(c.files.get(`${MA}/libx.so.1.0`), "needed by /app (libx.so.1)");
  assert.equal(c.files.get(`${MA}/liby.so.1`), `needed by ${MA}/libx.so.1.0 (liby.so.1)`);
});

test("LD_PRELOAD and /etc/ld.so.preload are loaded, and the preload file kept", async () => {
  const files = {
    "/app": exe(),
    [`${MA}/libpre.so.1`]: lib("libpre.so.1", { needed: ["libpredep.so.1"] }),
    [`${MA}/libpredep.so.1`]: lib("libpredep.so.1"),
    "/opt/libenv.so": lib("libenv.so"),
    "/etc/ld.so.preload": "libpre.so.1\n",
  };
  const c = await closure(files, ["/app"], ["LD_PRELOAD=/opt/libenv.so"]);
  assert.deepEqual(c.warnings, []);
  assert.equal(c.files.get("/opt/libenv.so"), "in LD_PRELOAD (/opt/libenv.so)");
  assert.equal(c.files.get(`${MA}/libpre.so.1`), "in /etc/ld.so.preload (libpre.so.1)");
  assert.ok(c.files.has(`${MA}/libpredep.so.1`));
  assert.equal(c.files.get("/etc/ld.so.preload"), "read by ld.so at every start");
});

test("scripts bring their interpreter, and env's command from the image's PATH", async () => {
  const files = {
    "/bin": { link: "usr/bin" },
    "/usr/bin/sh": exe(),
    "/usr/local/bin/python3": { link: "python3.12" },
    "/usr/local/bin/python3.12": exe({ needed: ["libpython3.12.so.1.0"] }),
    "/usr/local/lib/libpython3.12.so.1.0": lib("libpython3.12.so.1.0"),
    "/usr/bin/env": exe(),
    "/opt/python3": "not executable",
    "/app/run.py": "#!/usr/bin/env -S python3 -u\nprint()\n",
    "/app/run.sh": "#!/bin/sh -e\nexit 0\n",
    "/app/nested": "#!/app/run.sh\n",
    "/app/broken": "#!/usr/bin/nope\n",
    "/app/noenv": "#!/usr/bin/env ruby\n",
  };
  const c = await closure(
    files,
    ["/app/run.py", "/app/nested", "/app/broken", "/app/noenv"],
    ["PATH=/opt:/usr/local/bin:/usr/bin", "LD_LIBRARY_PATH=/usr/local/lib"],
  );
  assert.equal(c.files.get("/usr/bin/env"), "interpreter of /app/run.py");
  assert.equal(c.files.get("/usr/local/bin/python3.12"), "run by /usr/bin/env in /app/run.py");
  assert.ok(c.files.has("/usr/local/bin/python3"));
  assert.ok(c.files.has("/usr/local/lib/libpython3.12.so.1.0"));
  assert.equal(c.files.get("/app/run.sh"), "interpreter of /app/nested");
  assert.equal(c.files.get("/usr/bin/sh"), "interpreter of /app/run.sh");
  assert.ok(c.files.has("/bin"));
  assert.deepEqual(c.warnings, [
    "/usr/bin/nope, interpreter of /app/broken: not found",
    "ruby, run by /usr/bin/env in /app/noenv: not found in PATH",
  ]);
});

test("interpreter loops stop", async () => {
  const c = await closure({ "/a": "#!/b\n", "/b": "#!/a\n" }, ["/a"]);
  assert.equal(c.warnings.length, 1);
  assert.match(c.warnings[0]!, /too many levels of #! interpreters/);
});

test("roots: missing, other machine, static, not a program", async () => {
  const c = await closure(
    {
      "/static": buildElf({ static: true }),
      "/arm": buildElf({
        interpreter: "/lib/ld-linux-aarch64.so.1",
        machine: EM_AARCH64,
        needed: ["libc.so.6"],
      }),
      "/data": "just text",
      "/loop": { link: "/loop" },
      "/garbage": Buffer.concat([Buffer.from("\x7fELF\x02\x01\x01"), Buffer.alloc(20, 0xff)]),
    },
    ["/static", "/arm", "/data", "/nothing", "/loop", "/garbage"],
  );
  assert.deepEqual(c.warnings, [
    "/arm: 64-bit aarch64, not 64-bit x86_64",
    "/nothing: not found",
    "/loop: not found",
    "/garbage: bad ELF file: offset 32 is past the end of the file",
  ]);
  assert.deepEqual([...c.files.keys()], ["/static", "/arm", "/data", "/garbage"]);
});

test("aarch64 target: its own default dirs and interpreter", async () => {
  const files = {
    "/lib/ld-linux-aarch64.so.1": lib("ld-linux-aarch64.so.1", { machine: EM_AARCH64 }),
    "/lib/x86_64-linux-gnu/libc.so.6": lib("libc.so.6"),
    "/lib/aarch64-linux-gnu/libc.so.6": lib("libc.so.6", {
      machine: EM_AARCH64,
      needed: ["ld-linux-aarch64.so.1"],
    }),
    "/app": buildElf({
      machine: EM_AARCH64,
      interpreter: "/lib/ld-linux-aarch64.so.1",
      needed: ["libc.so.6"],
    }),
  };
  const c = await resolveClosure(image(files), ["/app"], { machine: EM_AARCH64, elfClass: 2 });
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(foundAs(c, "libc.so.6"), ["/lib/aarch64-linux-gnu/libc.so.6"]);
  assert.deepEqual(defaultLibraryDirs(EM_AARCH64, 2), [
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
  ]);
});

test("musl: its libc is the interpreter, its path file is searched and kept, rpaths inherit", async () => {
  const musl = "/lib/ld-musl-x86_64.so.1";
  const files = {
    [musl]: lib("libc.musl-x86_64.so.1"),
    "/lib/libc.musl-x86_64.so.1": { link: "ld-musl-x86_64.so.1" },
    "/etc/ld-musl-x86_64.path": "/opt/m\n/usr/lib\n",
    "/app": buildElf({ interpreter: musl, needed: ["libm1.so", "libc.musl-x86_64.so.1"], rpath: "/rp" }),
    "/opt/m/libm1.so": lib("libm1.so", { needed: ["libm2.so", "libpthread.so.0"] }),
    "/rp/libm2.so": lib("libm2.so"),
    "/usr/local/lib/libm1.so": lib("libm1.so"),
  };
  const c = await resolveClosure(image(files), ["/app"], amd64);
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(Object.fromEntries(c.files), {
    "/app": "root",
    [musl]: "interpreter of /app",
    "/etc/ld-musl-x86_64.path": `search path of ${musl}`,
    "/opt/m/libm1.so": "needed by /app (libm1.so)",
    "/rp/libm2.so": "needed by /opt/m/libm1.so (libm2.so)",
  });
});

test("musl rules hold even when its interpreter is missing", async () => {
  const files = {
    "/app": buildElf({
      interpreter: "/lib/ld-musl-aarch64.so.1",
      machine: EM_AARCH64,
      needed: ["libc.musl-aarch64.so.1", "libz.so.1"],
    }),
    "/usr/lib/libz.so.1": lib("libz.so.1", { machine: EM_AARCH64 }),
  };
  const c = await resolveClosure(image(files), ["/app", "/app"], { machine: EM_AARCH64, elfClass: 2 });
  assert.deepEqual(c.warnings, ["/lib/ld-musl-aarch64.so.1, interpreter of /app: not found"]);
  assert.equal(c.files.get("/usr/lib/libz.so.1"), "needed by /app (libz.so.1)");
});
