import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { ARCHES } from "../arch/arch.js";
import { buildKey, publish } from "./cache.js";
import { fragmentFiles, missingSettings, parseConfig } from "./kconfig.js";
import { buildEnv, makeArgs } from "./make.js";
import { debianSource } from "./source.js";

test("parseConfig reads NAME=value and `is not set` lines, and nothing else", () => {
  const text = [
    "# a comment",
    "CONFIG_DEVTMPFS=y",
    "# CONFIG_ACPI is not set",
    'CONFIG_INITRAMFS_SOURCE="/x y"',
    "CONFIG_PHYSICAL_START=0x200000",
    "",
    "NOT_CONFIG=y",
  ].join("\n");
  assert.deepEqual(parseConfig(text), [
    { name: "CONFIG_DEVTMPFS", value: "y" },
    { name: "CONFIG_ACPI", value: "n" },
    { name: "CONFIG_INITRAMFS_SOURCE", value: '"/x y"' },
    { name: "CONFIG_PHYSICAL_START", value: "0x200000" },
  ]);
});

test("missingSettings: what kconfig dropped or changed; an absent option counts as n", () => {
  const wanted = parseConfig("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=0x200000\n");
  const config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_D=0x1000000\n";
  assert.deepEqual(
    missingSettings(wanted, config).map((s) => s.name),
    ["CONFIG_B", "CONFIG_D"],
  );
});

test("a config holding every setting of a fragment misses none of them (property)", () => {
  const setting = fc.record({
    name: fc.stringMatching(/^CONFIG_[A-Z0-9_]{1,12}$/),
    value: fc.constantFrom("y", "n", "0x200000", '"x"'),
  });
  fc.assert(
    fc.property(fc.uniqueArray(setting, { selector: (s) => s.name, maxLength: 30 }), (settings) => {
      const config = settings
        .map((s) => (s.value === "n" ? `# ${s.name} is not set` : `${s.name}=${s.value}`))
        .join("\n");
      assert.deepEqual(missingSettings(settings, config), []);
      assert.deepEqual(
        parseConfig(config),
        settings.map((s) => ({ name: s.name, value: s.value })),
      );
    }),
    { numRuns: 200 },
  );
});

test("slimroot's fragments: every option has a comment saying why, and only built-in values", async () => {
  for (const arch of ARCHES) {
    for (const file of fragmentFiles(arch)) {
      const lines = (await readFile(file, "utf8")).split("\n");
      assert.ok(parseConfig(lines.join("\n")).length > 0, file);
      for (const [i, line] of lines.entries()) {
        if (!line.startsWith("CONFIG_")) continue;
        assert.doesNotMatch(line, /=m$/, `${file}:${i + 1}: a module`);
        // The option's group starts with a comment: walk up over the options before it.
        let j = i - 1;
        while (j >= 0 && lines[j]!.startsWith("CONFIG_")) j--;
        assert.ok(j >= 0 && lines[j]!.startsWith("#"), `${file}:${i + 1}: ${line} has no comment`);
      }
    }
  }
});

test("the cache key changes with each input", () => {
  const base = {
    source: "debian linux-source-6.1 6.1.192-3",
    fragments: ["CONFIG_A=y"],
    arch: "amd64" as const,
    toolchain: "gcc 12",
  };
  const k = buildKey(base);
  assert.notEqual(buildKey({ ...base, source: "x" }), k);
  assert.notEqual(buildKey({ ...base, fragments: ["CONFIG_A=y", "CONFIG_B=y"] }), k);
  assert.notEqual(buildKey({ ...base, arch: "arm64" }), k);
  assert.notEqual(buildKey({ ...base, toolchain: "gcc 13" }), k);
  assert.notEqual(buildKey({ ...base, cflags: "-mstringop-strategy=libcall" }), k);
  assert.equal(buildKey({ ...base }), k);
  assert.equal(buildKey({ ...base, cflags: "" }), k);
  // Without C flags the key is the one made before they were a part (arm64's cached kernels kept).
  assert.equal(k, "dd4621fb05fef807");
});

test("the C flags slimroot adds reach every make of the kernel, built or relinked with --embed", () => {
  assert.ok(makeArgs("amd64", "/o").includes("KCFLAGS=-mstringop-strategy=libcall"));
  assert.ok(!makeArgs("arm64", "/o").some((a) => a.startsWith("KCFLAGS=")));
});

test("kbuild's environment holds no variable that could change the build (KCFLAGS, CC, LLVM...)", () => {
  const saved = { ...process.env };
  try {
    Object.assign(process.env, {
      KCFLAGS: "-O0",
      CC: "clang",
      LLVM: "1",
      KCONFIG_CONFIG: "/etc/x",
      ARCH: "arm",
    });
    const env = buildEnv();
    assert.deepEqual(
      Object.keys(env).sort(),
      ["HOME", "LC_ALL", "PATH", ...(env.TMPDIR ? ["TMPDIR"] : [])].sort(),
    );
  } finally {
    process.env = saved;
  }
});

test("Debian's extracted source is used as it is: no apt, keyed by the .deb's sha256", async () => {
  const cache = await mkdtemp(join(tmpdir(), "kernel-src-test-"));
  const saved = { ...process.env };
  try {
    const tree = join(cache, "kernel-src", "linux-source-6.1_6.1.1-1_0123456789abcdef");
    await mkdir(tree, { recursive: true });
    await writeFile(join(tree, "Makefile"), "");
    await writeFile(`${tree}.json`, JSON.stringify({ version: "6.1.1-1", sha256: "ab".repeat(32) }));
    // No apt-get, apt-cache or dpkg to be found: a call to any of them fails the test.
    Object.assign(process.env, { SLIMROOT_CACHE: cache, PATH: join(cache, "nothing") });
    const s = await debianSource(() => assert.fail("it downloads"));
    assert.equal(s.tree, tree);
    assert.equal(s.content, `deb sha256 ${"ab".repeat(32)}`);
  } finally {
    process.env = saved;
    await rm(cache, { recursive: true, force: true });
  }
});

test("--force publishes a new directory; a reader of the old one keeps it whole", async () => {
  const parent = await mkdtemp(join(tmpdir(), "kernel-store-test-"));
  try {
    const store = join(parent, ".store");
    const dir = join(parent, "slimroot-amd64-k");
    for (const v of ["a", "b"]) {
      await mkdir(join(store, v), { recursive: true });
      await writeFile(join(store, v, "bzImage"), v);
    }
    await publish(dir, join(store, "a"));
    const reader = await realpath(dir);
    await publish(dir, join(store, "b"));
    assert.equal(await readFile(join(dir, "bzImage"), "utf8"), "b");
    assert.equal(await readFile(join(reader, "bzImage"), "utf8"), "a");
    assert.ok(existsSync(join(reader, "RETIRED")));
  } finally {
    await rm(parent, { recursive: true, force: true });
  }
});
