import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { ARCHES } from "../arch/arch.js";
import { UserError } from "../util/errors.js";
import { checkFragment, OWNED_OPTIONS, ownedInConfig, readFragment } from "./fragment.js";
import { fragmentFiles, parseConfig } from "./kconfig.js";
import { KERNEL_REQUIREMENTS, lockedOptions } from "./requirements.js";

/** The one-line message checkFragment refuses `text` with ("" when it accepts it). */
function refusal(text: string, file = "user.config"): string {
  try {
    checkFragment(file, text, "amd64");
    return "";
  } catch (err) {
    assert.ok(err instanceof UserError, String(err));
    assert.doesNotMatch(err.message, /\n/);
    return err.message;
  }
}

test("the issue's fragments are refused naming the file, the line and the option", () => {
  assert.equal(
    refusal('# mine\nCONFIG_INITRAMFS_SOURCE="/etc"\n'),
    "--config-fragment user.config:2: CONFIG_INITRAMFS_SOURCE is slimroot's to set (the built-in initramfs is slimroot's (--embed))",
  );
  assert.match(
    refusal('CONFIG_INITRAMFS_SOURCE="/root/.ssh /etc/shadow"'),
    /^--config-fragment user\.config:1: CONFIG_INITRAMFS_SOURCE /,
  );
  assert.match(
    refusal('CONFIG_CMDLINE_BOOL=y\nCONFIG_CMDLINE="init=/bin/sh"\nCONFIG_CMDLINE_OVERRIDE=y\n'),
    /^--config-fragment user\.config:1: CONFIG_CMDLINE_BOOL is slimroot's to set/,
  );
  assert.match(refusal('CONFIG_CMDLINE="init=/bin/sh"'), /:1: CONFIG_CMDLINE is slimroot's/);
  for (const line of [
    'CONFIG_EXTRA_FIRMWARE="../../../../etc/shadow"',
    'CONFIG_EXTRA_FIRMWARE_DIR="/"',
    'CONFIG_MODULE_SIG_KEY="/root/key.pem"',
    'CONFIG_SYSTEM_TRUSTED_KEYS="/etc/ssl/private/x.pem"',
    'CONFIG_DEFAULT_INIT="/bin/sh"',
    'CONFIG_BUILTIN_DTB_SOURCE="x"',
    "CONFIG_INITRAMFS_FORCE=y",
    "CONFIG_INITRAMFS_ROOT_UID=1000",
  ])
    assert.match(refusal(line), new RegExp(`:1: ${line.split("=")[0]} is slimroot's`), line);
});

test("a path or a make expansion in any string value is refused", () => {
  assert.match(
    refusal('CONFIG_LOCALVERSION="-a/../../etc"'),
    /:1: CONFIG_LOCALVERSION: a path or make expansion/,
  );
  assert.match(refusal('CONFIG_LOCALVERSION="$(shell cat /etc/shadow)"'), /a path or make expansion/);
  assert.match(refusal('CONFIG_DEFAULT_HOSTNAME="`id`"'), /a path or make expansion/);
  assert.equal(refusal('CONFIG_LOCALVERSION="-mine"\nCONFIG_DEFAULT_HOSTNAME="vm"'), "");
});

test("options of the table of kernel requirements stay on; slimroot's other defaults may go", () => {
  assert.match(
    refusal("# CONFIG_IPV6 is not set\n# CONFIG_DEVTMPFS is not set\n"),
    /^--config-fragment user\.config:2: CONFIG_DEVTMPFS=y is required by the init's mounts/,
  );
  assert.match(
    refusal("CONFIG_EXT4_FS_SECURITY=n"),
    /:1: CONFIG_EXT4_FS_SECURITY=y is required by ext4 disk images/,
  );
  assert.match(refusal("CONFIG_VIRTIO_BLK=m"), /CONFIG_VIRTIO_BLK=y is required/);
  // Not required by a format or VMM: only slimroot's defaults chose them.
  const off =
    "# CONFIG_IPV6 is not set\n# CONFIG_SYSVIPC is not set\n# CONFIG_FTRACE is not set\nCONFIG_PHYSICAL_START=0x1000000\n";
  assert.deepEqual(
    checkFragment("f", off, "amd64").map((s) => `${s.line}:${s.name}=${s.value}`),
    ["1:CONFIG_IPV6=n", "2:CONFIG_SYSVIPC=n", "3:CONFIG_FTRACE=n", "4:CONFIG_PHYSICAL_START=0x1000000"],
  );
  // Setting an owned option off is what tinyconfig does anyway.
  assert.equal(refusal('# CONFIG_CMDLINE_BOOL is not set\nCONFIG_INITRAMFS_SOURCE=""\nCONFIG_A=y'), "");
});

test("lines kconfig would not understand are refused, naming the line", () => {
  assert.match(refusal("CONFIG_A=y\nCONFIG_B y\n"), /^--config-fragment user\.config:2: not a kconfig line/);
  assert.match(refusal('CONFIG_A="unterminated'), /:1: CONFIG_A: value "\\"unterminated" is not/);
  assert.match(refusal("# only a comment\n"), /no CONFIG_ lines/);
});

test("no fragment setting an owned option to anything but off gets through (property)", () => {
  const owned = fc.constantFrom(...OWNED_OPTIONS.keys());
  const value = fc.oneof(
    fc.constantFrom("y", "m", "1", "0x10"),
    fc
      .string({ maxLength: 20 })
      .filter((v) => v !== "" && !/["\\\n]/.test(v))
      .map((v) => `"${v}"`),
  );
  const filler = fc.constantFrom("", "# a comment", "CONFIG_IPV6=y", "# CONFIG_SYSVIPC is not set");
  fc.assert(
    fc.property(
      fc.array(filler, { maxLength: 5 }),
      owned,
      value,
      fc.array(filler, { maxLength: 5 }),
      (pre, name, v, post) => {
        const text = [...pre, `${name}=${v}`, ...post].join("\n");
        assert.match(refusal(text), new RegExp(`user\\.config:${pre.length + 1}: ${name}`));
      },
    ),
    { numRuns: 300 },
  );
});

test("every option of the table is built in by slimroot's fragments or selected by one", async () => {
  const selected = new Set(["CONFIG_LZ4_DECOMPRESS"]);
  for (const arch of ARCHES) {
    const ours = new Map(
      (await Promise.all(fragmentFiles(arch).map((f) => readFile(f, "utf8"))))
        .flatMap(parseConfig)
        .map((s) => [s.name, s.value]),
    );
    for (const name of lockedOptions(arch).keys())
      assert.ok(ours.get(name) === "y" || selected.has(name), `${arch}: ${name}`);
    for (const name of OWNED_OPTIONS.keys()) assert.equal(ours.has(name), false, name);
  }
  assert.ok(KERNEL_REQUIREMENTS.some((r) => r.options.includes("CONFIG_SQUASHFS_XATTR")));
});

test("a resulting .config that sets an owned option is caught (a --source tree's defaults)", () => {
  assert.deepEqual(
    ownedInConfig(
      'CONFIG_A=y\nCONFIG_INITRAMFS_SOURCE=""\nCONFIG_MODPROBE_PATH="/sbin/modprobe"\nCONFIG_CMDLINE="init=/x"\n',
    ),
    ['CONFIG_CMDLINE="init=/x"'],
  );
});

test("a fragment is read only when it is a small regular file", async () => {
  const dir = await mkdtemp(join(tmpdir(), "fragment-test-"));
  try {
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    await assert.rejects(readFragment(fifo), /fifo: is a FIFO, not a regular file/);
    await assert.rejects(readFragment(dir), /is a directory, not a regular file/);
    await assert.rejects(readFragment(join(dir, "none")), /none: no such file/);
    const big = join(dir, "big");
    await writeFile(big, Buffer.alloc((1 << 20) + 1, 0x41));
    await assert.rejects(readFragment(big), /at most/);
    await writeFile(join(dir, "ok"), "CONFIG_A=y\n");
    assert.equal(await readFragment(join(dir, "ok")), "CONFIG_A=y\n");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
