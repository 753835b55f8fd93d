import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { hostFs } from "../tree/image-fs.js";
import { EM_386, EM_AARCH64, EM_X86_64 } from "./elf.js";
import {
  cacheFlagsMatch,
  globImage,
  type LdCacheEntry,
  LdCacheError,
  lookupLdCache,
  MUSL_DEFAULT_PATH,
  muslArch,
  muslPathFile,
  parseLdCache,
  parseMuslPath,
  readLdSoConf,
  readMuslPath,
} from "./ldconfig.js";

/** `ldconfig -p` for a cache file: [name, path] in cache order. */
function ldconfigPrint(cache: string): [string, string][] {
  const out = execFileSync("ldconfig", ["-p", "-C", cache], { encoding: "utf8" });
  return [...out.matchAll(/^\t(\S+) \(([^)]*)\) => (.*)$/gm)].map((m) => [m[1]!, m[3]!]);
}

test("host /etc/ld.so.cache parses to what ldconfig -p prints", () => {
  const entries = parseLdCache(readFileSync("/etc/ld.so.cache"));
  assert.ok(entries.length > 10);
  assert.deepEqual(
    entries.map((e) => [e.name, e.path]),
    ldconfigPrint("/etc/ld.so.cache"),
  );
  const libc = lookupLdCache(entries, "libc.so.6", EM_X86_64, 2);
  assert.equal(libc?.path, "/lib/x86_64-linux-gnu/libc.so.6");
  assert.equal(lookupLdCache(entries, "libc.so.6", EM_AARCH64, 2), undefined);
});

let root: string;
const src = "int f(void) { return 1; }\n";

before(() => {
  root = mkdtempSync(join(tmpdir(), "slimroot-ldconfig-"));
  const lib = (dir: string, soname: string, cc = "gcc", extra: string[] = []) => {
    mkdirSync(join(root, dir), { recursive: true });
    writeFileSync(join(root, "f.c"), src);
    execFileSync(cc, [
      "-shared",
      "-fPIC",
      "-nostdlib",
      ...extra,
      `-Wl,-soname,${soname}`,
      "-o",
      join(root, dir, soname),
      join(root, "f.c"),
    ]);
  };
  lib("opt/x86", "libfoo.so.1");
  lib("opt/arm", "libfoo.so.1", "aarch64-linux-gnu-gcc");
  lib("opt/i386", "libfoo.so.1", "gcc", ["-m32"]);
  lib("opt/more", "libbar.so.2");
  lib("srv/rel", "librel.so.3");
  lib("opt/notlisted", "libnot.so.1");
  mkdirSync(join(root, "etc/ld.so.conf.d"), { recursive: true });
  writeFileSync(
    join(root, "etc/ld.so.conf"),
    "# comment\n/opt/arm\n  /opt/x86/ # trailing slash and comment\ninclude /etc/ld.so.conf.d/*.conf\ninclude rel.d/*\nhwcap 1 x\n",
  );
  writeFileSync(join(root, "etc/ld.so.conf.d/a.conf"), "/opt/i386=libc6\n");
  writeFileSync(join(root, "etc/ld.so.conf.d/b.conf"), "/opt/more\n/opt/x86\n");
  writeFileSync(join(root, "etc/ld.so.conf.d/skip.txt"), "/opt/notlisted\n");
  mkdirSync(join(root, "etc/rel.d"));
  symlinkSync("/etc/ld.so.conf.d/real", join(root, "etc/rel.d/link.conf"));
  writeFileSync(join(root, "etc/ld.so.conf.d/real"), "/srv/rel\n");
});
after(() => rmSync(root, { recursive: true, force: true }));

test("readLdSoConf follows include globs inside the image, in order", async () => {
  assert.deepEqual(await readLdSoConf(hostFs(root)), [
    "/opt/arm",
    "/opt/x86",
    "/opt/i386",
    "/opt/more",
    "/srv/rel",
  ]);
  assert.deepEqual(await readLdSoConf(hostFs(root), "/etc/none.conf"), []);
  assert.deepEqual(globImage(hostFs(root), "/etc/ld.so.conf.d/*.conf"), [
    "/etc/ld.so.conf.d/a.conf",
    "/etc/ld.so.conf.d/b.conf",
  ]);
  assert.deepEqual(globImage(hostFs(root), "/opt/[a-x]*86"), ["/opt/i386", "/opt/x86"]);
  assert.deepEqual(globImage(hostFs(root), "/opt/[!x]*/lib?oo.so.1"), [
    "/opt/arm/libfoo.so.1",
    "/opt/i386/libfoo.so.1",
  ]);
});

for (const format of ["new", "compat", "old"] as const) {
  test(`ld.so.cache written by ldconfig -c ${format} parses to what ldconfig -p prints`, () => {
    const cache = `/etc/ld.so.cache.${format}`;
    execFileSync("ldconfig", ["-r", root, "-c", format, "-C", cache, "-X"]);
    const entries = parseLdCache(readFileSync(join(root, cache)));
    assert.deepEqual(
      entries.map((e) => [e.name, e.path]),
      ldconfigPrint(join(root, cache)),
    );
    const names = new Set(entries.map((e) => e.name));
    for (const n of ["libfoo.so.1", "libbar.so.2", "librel.so.3"]) assert.ok(names.has(n), n);
    assert.ok(!names.has("libnot.so.1"));
    // One libfoo.so.1 per architecture the host's ldconfig knows (not aarch64); lookups pick by
    // the arch bits.
    assert.equal(lookupLdCache(entries, "libfoo.so.1", EM_X86_64, 2)?.path, "/opt/x86/libfoo.so.1");
    assert.equal(lookupLdCache(entries, "libfoo.so.1", EM_AARCH64, 2), undefined);
    assert.equal(lookupLdCache(entries, "libfoo.so.1", EM_386, 1)?.path, "/opt/i386/libfoo.so.1");
    assert.equal(lookupLdCache(entries, "libbar.so.2", EM_AARCH64, 2), undefined);
  });
}

test("parseLdCache: big-endian caches, hwcap variants, garbage", () => {
  // A new-format cache as a big-endian ldconfig writes it (flags byte 3).
  const strings = ["libq.so.1\0", "/usr/lib/glibc-hwcaps/z15/libq.so.1\0", "/usr/lib/libq.so.1\0"];
  const header = 48;
  const entrySize = 24;
  const n = 2;
  const strBase = header + n * entrySize;
  const buf = Buffer.alloc(strBase + strings.join("").length);
  buf.write("glibc-ld.so.cache1.1", 0, "latin1");
  buf.writeUInt32BE(n, 20);
  buf.writeUInt32BE(strings.join("").length, 24);
  buf[28] = 3;
  buf.write(strings.join(""), strBase, "latin1");
  const off = (i: number) => strBase + strings.slice(0, i).join("").length;
  const entry = (i: number, value: number, hwcap: bigint) => {
    const e = header + i * entrySize;
    buf.writeInt32BE(0x0403, e);
    buf.writeUInt32BE(off(0), e + 4);
    buf.writeUInt32BE(off(value), e + 8);
    buf.writeBigUInt64BE(hwcap, e + 16);
  };
  entry(0, 1, (1n << 62n) | 1n);
  entry(1, 2, 0n);
  const entries = parseLdCache(buf, true);
  assert.deepEqual(
    entries.map((e) => e.path),
    ["/usr/lib/glibc-hwcaps/z15/libq.so.1", "/usr/lib/libq.so.1"],
  );
  // The baseline wins over a variant that needs a particular CPU.
  assert.equal(lookupLdCache(entries, "libq.so.1", 22, 2)?.path, "/usr/lib/libq.so.1");
  assert.equal(
    lookupLdCache(entries.slice(0, 1), "libq.so.1", 22, 2)?.path,
    "/usr/lib/glibc-hwcaps/z15/libq.so.1",
  );

  assert.throws(() => parseLdCache(Buffer.from("not a cache at all")), LdCacheError);
  assert.throws(() => parseLdCache(buf.subarray(0, 60)), LdCacheError);
  const badString = Buffer.from(buf);
  badString.writeUInt32BE(0xffffff, header + 8);
  assert.throws(() => parseLdCache(badString), LdCacheError);
  const invalid = Buffer.from(buf);
  invalid[28] = 1;
  assert.throws(() => parseLdCache(invalid), LdCacheError);
});

test("cacheFlagsMatch: type and architecture bits", () => {
  const match: [number, number, 1 | 2, boolean][] = [
    [0x0303, EM_X86_64, 2, true],
    [0x0003, EM_X86_64, 2, false],
    [0x0a03, EM_AARCH64, 2, true],
    [0x0303, EM_AARCH64, 2, false],
    [0x0003, EM_386, 1, true],
    [0x0001, EM_386, 1, true],
    [0x0000, EM_386, 1, false],
    [0x0803, EM_X86_64, 1, true],
  ];
  for (const [flags, machine, cls, want] of match) assert.equal(cacheFlagsMatch(flags, machine, cls), want);
  const e = (flags: number): LdCacheEntry => ({ name: "l", path: `/${flags}`, flags, hwcap: 0n });
  assert.equal(lookupLdCache([e(0x0a03), e(0x0303)], "l", EM_X86_64, 2)?.path, `/${0x0303}`);
});

test("musl: path file location and format", async () => {
  assert.equal(muslArch("/lib/ld-musl-x86_64.so.1"), "x86_64");
  assert.equal(muslArch("/lib/ld-linux-x86-64.so.2"), undefined);
  assert.equal(muslPathFile("/lib/ld-musl-aarch64.so.1"), "/etc/ld-musl-aarch64.path");
  assert.equal(
    muslPathFile("/usr/local/musl/lib/ld-musl-x86_64.so.1"),
    "/usr/local/musl/etc/ld-musl-x86_64.path",
  );
  assert.deepEqual(parseMuslPath("/lib:/usr/lib\n/opt/lib\n\n"), ["/lib", "/usr/lib", "/opt/lib"]);
  const fs = hostFs(root);
  assert.deepEqual(await readMuslPath(fs, "/lib/ld-musl-x86_64.so.1"), { dirs: MUSL_DEFAULT_PATH });
  writeFileSync(join(root, "etc/ld-musl-x86_64.path"), "/opt/x86\n/usr/lib\n");
  assert.deepEqual(await readMuslPath(fs, "/lib/ld-musl-x86_64.so.1"), {
    dirs: ["/opt/x86", "/usr/lib"],
    file: "/etc/ld-musl-x86_64.path",
  });
  cpSync(join(root, "etc/ld-musl-x86_64.path"), join(root, "etc/ld-musl-armhf.path"));
  assert.equal((await readMuslPath(fs, "/lib/ld-musl-armhf.so.1")).file, "/etc/ld-musl-armhf.path");
});
