import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import fc from "fast-check";
import { ARCHES } from "../arch/arch.js";
import { buildKey, fragmentFiles, missingSettings, parseConfig } from "./build.js";

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
  assert.equal(buildKey({ ...base }), k);
});
