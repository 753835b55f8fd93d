import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, realpathSync } from "node:fs";
import { test } from "node:test";
import fc from "fast-check";
import { ARCH } from "../arch/arch.js";
import {
  DF_1_NODEFLIB,
  ElfError,
  EM_386,
  EM_AARCH64,
  EM_PPC64,
  EM_S390,
  EM_X86_64,
  elfMachineName,
  elfTargetForArch,
  isElf,
  PT_DYNAMIC,
  parseElf,
} from "./elf.js";
import { envCommand, parseShebang } from "./shebang.js";
import { buildElf } from "./testing.js";

/** What readelf says about a file, in parseElf's terms. */
function readelf(path: string) {
  const out = execFileSync("readelf", ["-W", "-h", "-l", "-d", path], { encoding: "utf8" });
  const all = (label: string) =>
    [...out.matchAll(new RegExp(`\\(${label}\\)\\s+[^[]*\\[(.*)\\]`, "g"))].map((m) => m[1]!);
  return {
    interpreter: /Requesting program interpreter: (.*)\]/.exec(out)?.[1],
    needed: all("NEEDED"),
    soname: all("SONAME")[0],
    rpath: all("RPATH")[0],
    runpath: all("RUNPATH")[0],
    class: /Class:\s+ELF(\d+)/.exec(out)?.[1] === "64" ? 2 : 1,
  };
}

function hostObjects(): string[] {
  const dir = "/usr/lib/x86_64-linux-gnu";
  const libs = readdirSync(dir)
    .filter((n) => /\.so(\.\d+)*$/.test(n))
    .sort()
    .slice(0, 60)
    .map((n) => realpathSync(`${dir}/${n}`));
  const more = ["/bin/ls", "/usr/bin/ssh", "/usr/bin/curl", "/usr/aarch64-linux-gnu/lib/libc.so.6"];
  return [...new Set([...more.filter(existsSync), ...libs])].filter((p) =>
    isElf(readFileSync(p).subarray(0, 4)),
  );
}

test("parseElf agrees with readelf on host binaries and libraries", () => {
  const paths = hostObjects();
  assert.ok(paths.length > 20);
  for (const path of paths) {
    const want = readelf(path);
    const got = parseElf(readFileSync(path));
    assert.equal(got.elfClass, want.class, path);
    assert.equal(got.interpreter, want.interpreter, path);
    assert.deepEqual(got.dynamic?.needed ?? [], want.needed, path);
    assert.equal(got.dynamic?.soname, want.soname, path);
    assert.equal(got.dynamic?.rpath, want.rpath, path);
    assert.equal(got.dynamic?.runpath, want.runpath, path);
  }
});

test("parseElf reads /bin/ls: class, machine, interpreter, needed", () => {
  const ls = parseElf(readFileSync("/bin/ls"));
  assert.equal(ls.elfClass, 2);
  assert.equal(ls.data, 1);
  assert.equal(ls.machine, EM_X86_64);
  assert.equal(ls.interpreter, "/lib64/ld-linux-x86-64.so.2");
  assert.ok(ls.dynamic?.needed.includes("libc.so.6"));
  const libc = parseElf(readFileSync("/usr/aarch64-linux-gnu/lib/libc.so.6"));
  assert.equal(libc.machine, EM_AARCH64);
  assert.equal(libc.dynamic?.soname, "libc.so.6");
  assert.deepEqual(libc.dynamic?.needed, ["ld-linux-aarch64.so.1"]);
});

test("parseElf reads every class and byte order", () => {
  for (const elfClass of [1, 2] as const) {
    for (const data of [1, 2] as const) {
      const spec = {
        elfClass,
        data,
        machine: data === 2 ? EM_S390 : EM_386,
        interpreter: "/lib/ld.so.1",
        needed: ["liba.so.1", "libb.so.2"],
        soname: "libself.so.3",
        rpath: "$ORIGIN/../lib:/opt/x",
        runpath: "/opt/y",
        flags1: DF_1_NODEFLIB,
      };
      const elf = parseElf(buildElf(spec));
      assert.equal(elf.elfClass, elfClass);
      assert.equal(elf.data, data);
      assert.equal(elf.machine, spec.machine);
      assert.equal(elf.interpreter, "/lib/ld.so.1");
      assert.deepEqual(elf.dynamic, {
        needed: ["liba.so.1", "libb.so.2"],
        soname: "libself.so.3",
        rpath: "$ORIGIN/../lib:/opt/x",
        runpath: "/opt/y",
        flags: 0,
        flags1: DF_1_NODEFLIB,
      });
    }
  }
  const stat = parseElf(buildElf({ static: true, machine: EM_PPC64 }));
  assert.equal(stat.dynamic, undefined);
  assert.equal(stat.interpreter, undefined);
});

test("parseElf refuses garbage with ElfError, and marks truncation", () => {
  const bad = (buf: Buffer, truncated?: boolean) => {
    assert.throws(
      () => parseElf(buf),
      (err: unknown) => err instanceof ElfError && (truncated === undefined || err.truncated === truncated),
    );
  };
  bad(Buffer.from("#!/bin/sh\n"), false);
  bad(Buffer.alloc(0), true);
  const good = buildElf({ needed: ["liba.so.1"] });
  bad(good.subarray(0, 40), true);
  bad(good.subarray(0, good.length - 8), true);
  const badClass = Buffer.from(good);
  badClass[4] = 3;
  bad(badClass, false);
  // A DT_STRTAB no PT_LOAD maps.
  const elf = parseElf(good);
  const dyn = elf.programHeaders.find((p) => p.type === PT_DYNAMIC)!;
  const moved = Buffer.from(good);
  for (let p = dyn.offset; p < dyn.offset + dyn.filesz; p += 16)
    if (moved.readBigUInt64LE(p) === 5n) moved.writeBigUInt64LE(0xdead0000n, p + 8);
  bad(moved, false);
  assert.equal(isElf(good), true);
  assert.equal(isElf(Buffer.from("\x7fEL")), false);
});

/** Either a parse or a clean ElfError; anything else fails the property. */
function parsesOrRefuses(buf: Uint8Array): boolean {
  try {
    parseElf(buf);
  } catch (err) {
    if (!(err instanceof ElfError)) throw err;
  }
  return true;
}

test("fuzz: random bytes never crash parseElf", { timeout: 60_000 }, () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), parsesOrRefuses), { numRuns: 2000 });
  // Past the magic, so the header fields are what is random.
  const header = fc
    .tuple(fc.constantFrom(1, 2), fc.constantFrom(1, 2), fc.uint8Array({ minLength: 0, maxLength: 800 }))
    .map(([c, d, rest]) => Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, c, d, 1]), rest]));
  fc.assert(fc.property(header, parsesOrRefuses), { numRuns: 3000 });
});

/** Byte writes and an optional cut, applied to a copy. */
const mutations = (size: number, hot: number) =>
  fc.record({
    writes: fc.array(
      fc.tuple(
        fc.oneof(fc.nat({ max: Math.min(hot, size) - 1 }), fc.nat({ max: size - 1 })),
        fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 0xff, 0x7f, 0x80)),
      ),
      { minLength: 1, maxLength: 12 },
    ),
    cut: fc.option(fc.nat({ max: size }), { nil: undefined }),
  });

function mutate(src: Buffer, m: { writes: [number, number][]; cut: number | undefined }): Buffer {
  const out = Buffer.from(src);
  for (const [off, v] of m.writes) out[off] = v;
  return m.cut === undefined ? out : out.subarray(0, m.cut);
}

test("fuzz: mutations of /bin/ls never crash or hang parseElf", { timeout: 60_000 }, () => {
  const ls = readFileSync("/bin/ls");
  // Writes go mostly to the headers and the dynamic section, where parsing looks.
  const dyn = parseElf(ls).programHeaders.find((p) => p.type === PT_DYNAMIC)!;
  const hotArb = fc.record({
    writes: fc.array(
      fc.tuple(
        fc.oneof(
          fc.nat({ max: 1023 }),
          fc.integer({ min: dyn.offset, max: dyn.offset + dyn.filesz - 1 }),
          fc.nat({ max: ls.length - 1 }),
        ),
        fc.integer({ min: 0, max: 255 }),
      ),
      { minLength: 1, maxLength: 12 },
    ),
    cut: fc.option(fc.nat({ max: ls.length }), { nil: undefined }),
  });
  const start = Date.now();
  fc.assert(
    fc.property(hotArb, (m) => parsesOrRefuses(mutate(ls, m))),
    { numRuns: 1500 },
  );
  assert.ok(Date.now() - start < 30_000);
});

test("fuzz: mutations of small crafted ELFs of every class and byte order", { timeout: 60_000 }, () => {
  const seeds = ([1, 2] as const).flatMap((elfClass) =>
    ([1, 2] as const).map((data) =>
      buildElf({ elfClass, data, interpreter: "/lib/ld.so", needed: ["a", "b"], soname: "s", runpath: "/r" }),
    ),
  );
  const arb = fc
    .nat({ max: seeds.length - 1 })
    .chain((i) => mutations(seeds[i]!.length, 128).map((m) => mutate(seeds[i]!, m)));
  fc.assert(fc.property(arb, parsesOrRefuses), { numRuns: 4000 });
});

test("parseShebang reads the interpreter and one argument, as the kernel does", () => {
  const sb = (s: string) => parseShebang(Buffer.from(s));
  assert.deepEqual(sb("#!/bin/sh\necho hi\n"), { interpreter: "/bin/sh" });
  assert.deepEqual(sb("#! /usr/bin/env  python3 -u \nx"), { interpreter: "/usr/bin/env", arg: "python3 -u" });
  assert.deepEqual(sb("#!/bin/bash -e"), { interpreter: "/bin/bash", arg: "-e" });
  assert.deepEqual(sb("#!\t/usr/bin/perl\t-w\n"), { interpreter: "/usr/bin/perl", arg: "-w" });
  assert.equal(sb("#!\n"), undefined);
  assert.equal(sb("#!   \n/bin/sh"), undefined);
  assert.equal(sb("echo\n"), undefined);
  assert.equal(sb("#"), undefined);
  // Only the first 256 bytes count.
  assert.deepEqual(sb(`#!/bin/${"x".repeat(300)}`), { interpreter: `/bin/${"x".repeat(249)}` });
});

test("envCommand finds the program env runs", () => {
  assert.equal(envCommand("python3"), "python3");
  assert.equal(envCommand("-S python3 -u"), "python3");
  assert.equal(envCommand("-Spython3"), "python3");
  assert.equal(envCommand("--split-string=node --inspect"), "node");
  assert.equal(envCommand("-i PATH=/opt/bin perl"), "perl");
  assert.equal(envCommand("-u HOME -C /tmp ruby"), "ruby");
  assert.equal(envCommand("-- -weird"), "-weird");
  assert.equal(envCommand("A=1"), undefined);
  assert.equal(envCommand(undefined), undefined);
});

test("machine names and OCI architectures", () => {
  assert.equal(elfMachineName(EM_X86_64), "x86_64");
  assert.equal(elfMachineName(EM_AARCH64), "aarch64");
  assert.equal(elfMachineName(9999), "machine 9999");
  assert.deepEqual(elfTargetForArch("amd64"), { machine: EM_X86_64, elfClass: 2 });
  assert.deepEqual(elfTargetForArch("arm64"), { machine: EM_AARCH64, elfClass: 2 });
  assert.equal(elfTargetForArch("sparc"), undefined);
  // arch/ (a leaf) holds the machine numbers too, as literals: they must be these.
  assert.equal(ARCH.amd64.elfMachine, EM_X86_64);
  assert.equal(ARCH.arm64.elfMachine, EM_AARCH64);
});
