/**
 * File capabilities reach the app (issue 17 item 9): a non-root app (uid 65534) binds port 80
 * through `security.capability` = cap_net_bind_service on its binary, on each disk format and
 * on both kernels (Debian's cloud kernel and slimroot's own). The image holds a static
 * busybox twice: /cap/busybox with the capability, /bin/busybox without; the app exits 0
 * only when the first binds port 80 and the second is refused port 81 (so the app really
 * is unprivileged and the capability, not root, did it).
 *
 * A newc cpio has no field for xattrs: `build` warns that the capability is dropped, and on
 * an initramfs the bind fails (exit 3) on either kernel.
 *
 * QEMU TCG boots: one per format per kernel (8), sharing the two kernels.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { buildKernel } from "../src/kernel/build.js";
import { fetchKernel } from "../src/kernel/fetch.js";
import { runCli } from "./support/cli.js";
import { debianBusybox } from "./support/kernel.js";
import { qemusUsing } from "./support/qemu.js";
import { paxMember, rawTar } from "./support/raw-tar.js";

/** cap_net_bind_service=ep as a v2 vfs_cap_data (what `setcap` writes). */
const NET_BIND_SERVICE = Buffer.from("0100000200040000000000000000000000000000", "hex");
const APP = [
  "/cap/busybox httpd -p 80 || exit 3",
  "/bin/busybox httpd -p 81 && exit 4",
  '[ "$(id -u)" = 65534 ] || exit 5',
  "exit 0",
].join("; ");
const FORMATS = [
  { format: "ext4", ext: "ext4", code: 0 },
  { format: "erofs", ext: "erofs", code: 0 },
  { format: "squashfs", ext: "sqfs", code: 0 },
  { format: "cpio", ext: "cpio.gz", code: 3 },
] as const;
const BOOT_TIMEOUT_MS = 300_000;

let work = "";
const images = new Map<string, string>();

before(async () => {
  work = await mkdtemp("/tmp/slimroot-file-caps-");
  const busybox = await readFile(await debianBusybox("amd64"));
  const tar = join(work, "caps.tar");
  await writeFile(
    tar,
    rawTar([
      { name: "bin/", type: "5", mode: 0o755 },
      { name: "bin/busybox", body: busybox, mode: 0o755 },
      { name: "bin/sh", type: "2", linkname: "busybox", mode: 0o777 },
      { name: "cap/", type: "5", mode: 0o755 },
      paxMember([["SCHILY.xattr.security.capability", NET_BIND_SERVICE]]),
      { name: "cap/busybox", body: busybox, mode: 0o755 },
    ]),
  );
  for (const { format, ext } of FORMATS) {
    const out = join(work, `caps.${ext}`);
    const r = await runCli(
      [
        "build",
        `tar:${tar}`,
        "-o",
        out,
        "--minimize",
        "none",
        "--entrypoint",
        "/bin/sh",
        "-u",
        "65534:65534",
      ],
      { TMPDIR: work },
    );
    assert.equal(r.code, 0, `build ${format}: ${r.stderr}`);
    if (format === "cpio")
      assert.match(r.stderr, /extended attributes/, "cpio: the dropped capability is not said");
    else assert.doesNotMatch(r.stderr, /extended attributes/, format);
    images.set(format, out);
  }
});
after(async () => {
  assert.deepEqual(await qemusUsing(work), [], "QEMU processes left behind");
  await rm(work, { recursive: true, force: true });
});

const KERNELS = {
  debian: async () => (await fetchKernel({ arch: "amd64" })).dir,
  slimroot: async () => (await buildKernel({ arch: "amd64" })).dir,
};

for (const [name, get] of Object.entries(KERNELS)) {
  describe(`a non-root app binds port 80 through a file capability, on ${name}'s kernel`, {
    timeout: FORMATS.length * BOOT_TIMEOUT_MS + 90 * 60_000,
  }, () => {
    let kernel = "";
    before(async () => {
      kernel = await get();
    });
    for (const { format, code } of FORMATS) {
      const what =
        code === 0
          ? "binds port 80; the same binary without the capability may not"
          : "the capability is gone: EACCES";
      test(`${format}: ${what}`, { timeout: BOOT_TIMEOUT_MS }, async () => {
        const r = await runCli(
          ["run", images.get(format)!, "--kernel", kernel, "--timeout", "4m", "--", "/bin/sh", "-c", APP],
          { TMPDIR: work },
        );
        assert.equal(r.code, code, `${r.stdout}\n${r.stderr}`);
        if (code === 3) assert.match(r.stdout + r.stderr, /bind: Permission denied/);
      });
    }
  });
}
