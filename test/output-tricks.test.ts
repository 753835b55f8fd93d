// Issue 17 item 3: every output of every command goes through src/output/. Each trick on an
// output (relative, the input, a symlink or a hard link to it, a device, a FIFO, an existing
// directory of the user's) against each command that writes one: either the output is
// written whole where it was asked for, or one line naming the flag, exit 1 (125 for run,
// as docker run), and every file that was there byte-identical, nothing written elsewhere.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { copyFile, link, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, before, describe, test } from "node:test";
import { type CliOptions, type CliResult, runCli } from "./support/cli.js";
import { tarOf } from "./support/layers.js";

let work: string;
let rootDir: string;
let tarFile: string;
let image: string;

/** Every path under `dir` with what it is: a file's sha256, a link's target, a node's type. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = lstatSync(p);
      const key = relative(dir, p);
      if (st.isDirectory()) {
        out.set(key, "dir");
        walk(p);
      } else if (st.isFile())
        out.set(key, `file ${st.ino} ${createHash("sha256").update(readFileSync(p)).digest("hex")}`);
      else if (st.isSymbolicLink()) out.set(key, `link ${readlinkSync(p)}`);
      else out.set(key, `node ${st.mode.toString(8)} ${st.rdev}`);
    }
  };
  walk(dir);
  return out;
}

const cli = (args: string[], o: CliOptions = {}) => runCli(args, {}, { timeoutMs: 120_000, ...o });

/** One line naming `flag`, exit `code`, and nothing under `work` (or /) changed. */
async function assertRefused(
  args: string[],
  flag: string,
  pattern: RegExp,
  o: CliOptions & { code?: number } = {},
): Promise<CliResult> {
  const before = snapshot(work);
  const r = await cli(args, o);
  assert.equal(r.code, o.code ?? 1, `${args.join(" ")}: exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `${args.join(" ")}: one line: ${r.stderr}`);
  assert.ok(lines[0]!.startsWith(`slimroot: ${flag} `), `${args.join(" ")}: names ${flag}: ${lines[0]}`);
  assert.match(lines[0]!, pattern, args.join(" "));
  assert.deepEqual(snapshot(work), before, `${args.join(" ")}: nothing changed`);
  return r;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-output-tricks-"));
  rootDir = join(work, "root");
  await mkdir(join(rootDir, "bin"), { recursive: true });
  await writeFile(join(rootDir, "bin", "app"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
  tarFile = join(work, "rootfs.tar");
  // An xattr: the disk writers then run setfattr and the mkfs after `cd /` under fakeroot.
  await writeFile(
    tarFile,
    await tarOf([
      { name: "bin/", type: "directory" },
      { name: "bin/app", body: "#!/bin/sh\necho hi\n", mode: 0o755, pax: { "SCHILY.xattr.user.note": "x" } },
    ]),
  );
  image = join(work, "app.cpio");
  const r = await cli(["build", `dir:${rootDir}`, "--entrypoint", "/bin/app", "-o", image]);
  assert.equal(r.code, 0, r.stderr);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** The tricks on a file output, each a path made under `dir` and what the refusal says. */
async function fileTricks(dir: string, input: string): Promise<[string, string, RegExp][]> {
  await mkdir(dir, { recursive: true });
  const linkTo = join(dir, "symlink-to-input");
  await symlink(input, linkTo);
  const hard = join(dir, "hardlink-to-input");
  await link(input, hard);
  // A null device of our own (1,3 as /dev/null): a writer that got this wrong would replace the host's.
  const dev = join(dir, "null");
  execFileSync("mknod", ["-m", "666", dev, "c", "1", "3"]);
  const fifo = join(dir, "fifo");
  execFileSync("mkfifo", [fifo]);
  const userDir = join(dir, "user-dir");
  await mkdir(userDir);
  await writeFile(join(userDir, "mine.txt"), "the user's\n");
  return [
    ["the input", input, /is the input .*refusing to overwrite it$/],
    ["a symlink to the input", linkTo, /is the input .*refusing to overwrite it$/],
    ["a hard link to the input", hard, /is the input .*refusing to overwrite it$/],
    ["a device", dev, /is a character device; give the path of a file$/],
    ["a FIFO", fifo, /is a named pipe; give the path of a file$/],
    ["a directory of the user's", userDir, /is a directory; give the path of a file$/],
  ];
}

describe("a file output: the input, links to it, a device, a FIFO, a directory", () => {
  // Three at a time: refusals change nothing, so each one's before/after snapshots still hold.
  test("build (cpio, erofs), trace, bench --json/--svg, inspect --html, snapshot: each trick on two of them", {
    concurrency: 3,
  }, async (t) => {
    if (process.getuid?.() !== 0) return t.skip("needs root to make a device node (mknod)");
    // Every command checks its outputs in src/output/ (its unit tests run every trick on it):
    // here each trick goes through two commands, and each command gets two tricks.
    const build = (out: string) => ["build", `tar:${tarFile}`, "--entrypoint", "/bin/app", "-o", out];
    const commands: [string, (out: string) => string[]][] = [
      ["-o", build],
      ["--json", (out) => ["bench", `tar:${tarFile}`, "--probe", "http:80/", "--json", out]],
      ["-o", (out) => ["trace", `tar:${tarFile}`, "--entrypoint", "/bin/app", "-o", out]],
      ["--svg", (out) => ["bench", `tar:${tarFile}`, "--probe", "http:80/", "--svg", out]],
      ["-o", (out) => [...build(out), "--format", "erofs"]],
    ];
    const tricks = await fileTricks(join(work, "build-tricks"), tarFile);
    const inspect = await fileTricks(join(work, "inspect-tricks"), image);
    const ramTricks: [string, string, RegExp][] = [];
    for (const [what, out, pattern] of [inspect[1]!, inspect[3]!, inspect[4]!]) {
      const snap = `${out}-snap`;
      await symlink(out, `${snap}.ram`);
      ramTricks.push([what, snap, pattern]);
    }
    const runs: Promise<void>[] = [];
    for (const [i, [what, out, pattern]] of tricks.entries())
      for (const [flag, args] of [commands[i % commands.length]!, commands[(i + 2) % commands.length]!])
        runs.push(
          t.test(`${args(out)[0]} ${flag} ${what}`, async () => {
            await assertRefused(args(out), flag, pattern);
          }),
        );
    for (const [what, out, pattern] of [inspect[0]!, inspect[2]!, inspect[4]!])
      runs.push(
        t.test(`inspect --html ${what}`, async () => {
          await assertRefused(["inspect", image, "--html", out], "--html", pattern);
        }),
      );
    // snapshot's file is checked before anything boots (exit 125, as run's failures).
    for (const [what, out, pattern] of inspect)
      runs.push(
        t.test(`snapshot -o ${what}`, async () => {
          await assertRefused(["snapshot", image, "--probe", "tcp:80", "-o", out], "-o", pattern, {
            code: 125,
          });
        }),
      );
    // Its RAM file (OUT.ram, written beside it) is an output as well: three tricks on it,
    // each a symlink OUT.ram to the trick's path (made before any command runs).
    for (const [what, snap, pattern] of ramTricks)
      runs.push(
        t.test(`snapshot -o OUT whose OUT.ram is ${what}`, async () => {
          await assertRefused(
            ["snapshot", image, "--probe", "tcp:80", "-o", snap],
            `-o ${snap} (its RAM file):`,
            pattern,
            { code: 125 },
          );
        }),
      );
    await Promise.all(runs);
  });

  test("kernel build --embed IMG -o IMG (or IMG.why, or a link to it): refused at once, before any kernel is built", async () => {
    const why = `${image}.why`;
    const linkTo = join(work, "embed-link");
    await symlink(image, linkTo);
    for (const out of [why, linkTo]) {
      const started = Date.now();
      await assertRefused(
        ["kernel", "build", "--embed", image, "-o", out],
        "-o",
        /is the input .*refusing to overwrite it$/,
      );
      assert.ok(Date.now() - started < 60_000, "checked before the build, not after");
    }
  });

  test("two outputs of one command never name the same file (bench --json F --svg F)", async () => {
    const out = join(work, "report");
    await writeFile(out, "the user's\n");
    await assertRefused(
      ["bench", `tar:${tarFile}`, "--probe", "http:80/", "--json", out, "--svg", out],
      "--svg",
      /report is also written by --json .*report; give each output its own file$/,
    );
  });
});

describe("a relative -o is written where it was asked for, whatever the writer does", () => {
  test("erofs and squashfs with an xattr: the image in the working directory, whole; nothing in /", async () => {
    const cwd = join(work, "relative");
    await mkdir(cwd);
    const rootBefore = readdirSync("/").sort();
    for (const [name, magic, offset] of [
      ["out.erofs", Buffer.from([0xe2, 0xe1, 0xf5, 0xe0]), 1024],
      ["out.sqfs", Buffer.from("hsqs"), 0],
    ] as const) {
      // An older output is there: it must be replaced by the new image, not by an empty file.
      await writeFile(join(cwd, name), "previous\n");
      const r = await cli(["build", `tar:${tarFile}`, "--entrypoint", "/bin/app", "-o", name], { cwd });
      assert.equal(r.code, 0, r.stderr);
      const bytes = await readFile(join(cwd, name));
      assert.ok(bytes.length > 4096, `${name}: ${bytes.length} bytes`);
      assert.deepEqual(bytes.subarray(offset, offset + 4), magic, `${name}: its format's magic`);
      assert.match(await readFile(join(cwd, `${name}.why`), "utf8"), /bin\/app/);
    }
    assert.deepEqual(readdirSync("/").sort(), rootBefore, "nothing written in /");
    assert.deepEqual((await readdir(cwd)).sort(), ["out.erofs", "out.erofs.why", "out.sqfs", "out.sqfs.why"]);
  });

  test("initramfs-list, inspect --html and run --dry-run: relative -o lands in the working directory", async () => {
    const cwd = join(work, "relative-more");
    await mkdir(cwd);
    let r = await cli(
      ["build", `dir:${rootDir}`, "--entrypoint", "/bin/app", "--format", "initramfs-list", "-o", "list/"],
      { cwd },
    );
    assert.equal(r.code, 0, r.stderr);
    r = await cli(["inspect", image, "--html", "page.html"], { cwd });
    assert.equal(r.code, 0, r.stderr);
    r = await cli(["run", image, "--dry-run", "-o", "vm"], { cwd });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await readdir(cwd)).sort(), ["list", "list.why", "page.html", "vm"]);
    assert.deepEqual((await readdir(join(cwd, "list"))).sort(), [
      ".slimroot-output",
      "initramfs_list",
      "root",
    ]);
    assert.match(r.stdout, new RegExp(`-initrd ${join(cwd, "vm", "initrd")} `));
  });
});

describe("an output directory: new, empty or slimroot's, never the user's files", () => {
  test("initramfs-list -o DIR/ holding an initramfs_list and the user's files: refused, every file kept", async () => {
    const dir = join(work, "list-user");
    await mkdir(dir);
    await writeFile(join(dir, "initramfs_list"), "dir /x 0755 0 0\n");
    await writeFile(join(dir, "notes.txt"), "the user's\n");
    await assertRefused(
      ["build", `dir:${rootDir}`, "--entrypoint", "/bin/app", "--format", "initramfs-list", "-o", `${dir}/`],
      "-o",
      /holds files slimroot did not write; give a new or empty directory/,
    );
  });

  test("initramfs-list: slimroot's own directory is replaced whole with its .why; a file added to it makes it the user's", async () => {
    const dir = join(work, "list-own");
    const args = [
      "build",
      `dir:${rootDir}`,
      "--entrypoint",
      "/bin/app",
      "--format",
      "initramfs-list",
      "-o",
      dir,
    ];
    for (let i = 0; i < 2; i++) {
      const r = await cli(args);
      assert.equal(r.code, 0, r.stderr);
    }
    assert.deepEqual((await readdir(dir)).sort(), [".slimroot-output", "initramfs_list", "root"]);
    assert.ok(
      (await readdir(work)).every((n) => !n.includes(".tmp") && !n.includes(".old")),
      "no temp left",
    );
    await writeFile(join(dir, "added.txt"), "the user's\n");
    await assertRefused(args, "-o", /holds added\.txt, which slimroot did not write/);
  });

  test("initramfs-list -o on a hard link to the input, a FIFO: refused", async (t) => {
    if (process.getuid?.() !== 0) return t.skip("needs root to make a device node (mknod)");
    const tricks = await fileTricks(join(work, "list-tricks"), tarFile);
    for (const [, out] of [tricks[2]!, tricks[4]!]) {
      await assertRefused(
        ["build", `tar:${tarFile}`, "--entrypoint", "/bin/app", "--format", "initramfs-list", "-o", out],
        "-o",
        /is the input|exists and is .*, not a directory$/,
      );
    }
  });

  test("run --dry-run -o DIR holding the user's initrd and vm.json: refused (qemu and firecracker), both kept", async () => {
    const dir = join(work, "dry-user");
    await mkdir(dir);
    await copyFile(image, join(dir, "initrd"));
    await writeFile(join(dir, "vm.json"), "the user's disk\n");
    for (const vmm of ["firecracker"])
      await assertRefused(
        ["run", image, "--vmm", vmm, "--dry-run", "-o", dir],
        "-o",
        /holds files slimroot did not write; give a new or empty directory/,
        { code: 125 },
      );
  });

  test("run --dry-run -o DIR: slimroot's DIR is written again, but never over an input in it", async () => {
    const dir = join(work, "dry-own");
    const fc = ["--vmm", "firecracker", "--dry-run", "-o", dir];
    let r = await cli(["run", image, ...fc]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await readdir(dir)).sort(), [
      ".slimroot-output",
      "firecracker.log",
      "initrd",
      "vm.json",
      "vmlinux",
    ]);
    // The user puts an image (or a disk) where slimroot wrote its initrd and vm.json, and runs it from there.
    await copyFile(image, join(dir, "initrd"));
    await assertRefused(
      ["run", join(dir, "initrd"), ...fc],
      "-o",
      /initrd is the input .*refusing to overwrite it$/,
      {
        code: 125,
      },
    );
    await copyFile(image, join(dir, "vm.json"));
    await assertRefused(
      ["run", join(dir, "vm.json"), ...fc],
      "-o",
      /vm\.json is the input .*refusing to overwrite it$/,
      {
        code: 125,
      },
    );
    // A QEMU dry run into it replaces what it writes and removes what only Firecracker's had.
    await rm(join(dir, "vm.json"));
    r = await cli(["run", image, "--dry-run", "-o", dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await readdir(dir)).sort(), [".slimroot-output", "initrd"]);
  });

  test("run --dry-run -o on a link to the image, a device: refused", async (t) => {
    if (process.getuid?.() !== 0) return t.skip("needs root to make a device node (mknod)");
    const tricks = await fileTricks(join(work, "dry-tricks"), image);
    for (const [, out] of [tricks[1]!, tricks[3]!])
      await assertRefused(
        ["run", image, "--dry-run", "-o", out],
        "-o",
        /is the input|exists and is .*, not a directory$/,
        { code: 125 },
      );
  });
});
