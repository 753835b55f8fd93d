/**
 * The hand-made route's list format: `build --format initramfs-list` against the kernel
 * tree's own usr/gen_init_cpio (same entries, modes, owners, devices, links and contents as
 * slimroot's own cpio), `list:` reading that list back to the same bytes, and a hand-written
 * list that builds and boots.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createReadStream } from "node:fs";
import { chown, link, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { S_IFLNK, S_IFMT, S_IFREG } from "../src/cpio/newc.js";
import { readCpio } from "../src/cpio/reader.js";
import { fetchKernel } from "../src/kernel/fetch.js";
import { runCli } from "./support/cli.js";
import { nginxFixture } from "./support/fixtures.js";
import { genInitCpio } from "./support/gen-init-cpio.js";

const run = promisify(execFile);
let work = "";
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-list-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

interface Seen {
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  rdev: string;
  /** File content (from the name that carries it) or symlink target. */
  body: string;
  /** The other names of a hard-linked file, sorted. */
  links: string[];
}

/** An archive's entries by name, hard links resolved through their inode numbers. */
async function entries(file: string): Promise<Map<string, Seen>> {
  const raw = [];
  for await (const e of readCpio(createReadStream(file))) raw.push(e);
  const byIno = new Map<number, typeof raw>();
  for (const e of raw) if ((e.mode & S_IFMT) === S_IFREG) byIno.set(e.ino, [...(byIno.get(e.ino) ?? []), e]);
  const out = new Map<string, Seen>();
  for (const e of raw) {
    if (e.name === ".") continue;
    const group = (e.mode & S_IFMT) === S_IFREG ? byIno.get(e.ino)! : [e];
    let body = group.find((g) => g.body.length > 0)?.body ?? Buffer.alloc(0);
    // gen_init_cpio stores a symlink's target with its NUL; the kernel reads up to it.
    if ((e.mode & S_IFMT) === S_IFLNK)
      body = body.subarray(0, body.indexOf(0) < 0 ? undefined : body.indexOf(0));
    out.set(e.name, {
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
      mtime: e.mtime,
      rdev: `${e.rdevMajor},${e.rdevMinor}`,
      body: body.toString("base64"),
      links: group
        .map((g) => g.name)
        .filter((n) => n !== e.name)
        .sort(),
    });
  }
  return out;
}

/** Builds `source` as a cpio and as a list; checks the list with gen_init_cpio and list:. */
async function roundTrip(
  name: string,
  source: string,
  args: string[],
  /** For list: when the source's own run config (which a list has not) differs: app.conf may differ. */
  listArgs?: string[],
) {
  const tool = await genInitCpio();
  const cpio = join(work, `${name}.cpio`);
  const listDir = join(work, `${name}-list`);
  let r = await runCli(["build", source, ...args, "--compress", "none", "-o", cpio]);
  assert.equal(r.code, 0, r.stderr);
  r = await runCli(["build", source, ...args, "--format", "initramfs-list", "-o", `${listDir}/`]);
  assert.equal(r.code, 0, r.stderr);
  const list = join(listDir, "initramfs_list");
  const kernelCpio = join(work, `${name}.gen.cpio`);
  await run("sh", ["-c", `"$0" -t 0 "$1" > "$2"`, tool, list, kernelCpio], { timeout: 120_000 });
  const ours = await entries(cpio);
  const theirs = await entries(kernelCpio);
  assert.deepEqual([...theirs.keys()].sort(), [...ours.keys()].sort(), "the same entries");
  for (const [path, e] of ours) assert.deepEqual(theirs.get(path), e, path);
  // list: reads the list back to the very same archive.
  const again = join(work, `${name}.again.cpio`);
  r = await runCli(["build", `list:${list}`, ...(listArgs ?? args), "--compress", "none", "-o", again]);
  assert.equal(r.code, 0, r.stderr);
  if (!listArgs)
    assert.ok((await readFile(again)).equals(await readFile(cpio)), "list: gives back the same bytes");
  else {
    const back = await entries(again);
    for (const m of [ours, back]) m.delete("etc/slimroot/app.conf");
    assert.deepEqual(back, ours, "list: gives back the same entries");
  }
  return ours;
}

test("a host tree round-trips through the list and the kernel's gen_init_cpio", async (t) => {
  if (process.getuid?.() !== 0) return t.skip("needs root for device nodes and owners");
  const root = join(work, "tree");
  await mkdir(join(root, "bin"), { recursive: true });
  await mkdir(join(root, "srv/private"), { recursive: true, mode: 0o750 });
  await mkdir(join(root, "dev"));
  await writeFile(join(root, "bin/tool"), "#!/bin/sh\necho tool\n", { mode: 0o4755 });
  await writeFile(join(root, "srv/private/data"), "data\n", { mode: 0o640 });
  await chown(join(root, "srv/private"), 1000, 1001);
  await chown(join(root, "srv/private/data"), 1000, 1001);
  await writeFile(join(root, "srv/empty"), "");
  await link(join(root, "bin/tool"), join(root, "srv/tool-link"));
  await symlink("../bin/tool", join(root, "srv/tool-sym"));
  await run("mknod", ["-m", "0620", join(root, "dev/tty9"), "c", "4", "9"]);
  await run("mknod", ["-m", "0660", join(root, "dev/loop9"), "b", "7", "9"]);
  await run("mkfifo", ["-m", "0600", join(root, "srv/fifo")]);
  const ours = await roundTrip("tree", `dir:${root}`, ["--entrypoint", "/bin/tool"]);
  assert.equal(ours.get("srv/private/data")?.uid, 1000);
  assert.equal(ours.get("bin/tool")?.mode, S_IFREG | 0o4755);
  assert.deepEqual(ours.get("bin/tool")?.links, ["srv/tool-link"]);
  assert.equal(ours.get("dev/loop9")?.rdev, "7,9");
});

test("nginx (static) round-trips through the list and the kernel's gen_init_cpio", async () => {
  const fx = await nginxFixture();
  await roundTrip("nginx", fx.ociRef, ["--minimize", "static"], ["--entrypoint", "/usr/sbin/nginx"]);
});

test("a bad list line is refused with FILE:LINE, exit 1, nothing written", async () => {
  const dir = join(work, "bad");
  await mkdir(dir);
  const list = join(dir, "initramfs_list");
  for (const [text, message] of [
    [
      "dir /a 0755 0 0\nfile /a/x missing.txt 0644 0 0\n",
      /initramfs_list:2: missing\.txt: no such regular file/,
    ],
    ["dir /a 0755 0 0\ndir /a/../.. 0755 0 0\n", /initramfs_list:2: .*escapes the image root/],
    ["dir /a 0755 0 0\nslink /a 0777 0 0\n", /initramfs_list:2: expected "slink <name> <target>/],
    ["dir /a 0755 0 0\ndir /a 0700 0 0\n", /initramfs_list:2: \/a is listed twice \(first at line 1\)/],
  ] as const) {
    await writeFile(list, text);
    const out = join(dir, "out.cpio");
    const r = await runCli(["build", `list:${list}`, "-o", out, "--", "/x"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    await assert.rejects(readFile(out));
  }
});

test("a hand-written list with dir, file, slink and nod lines builds and boots", async () => {
  await fetchKernel({ arch: "amd64" });
  const dir = join(work, "hand");
  await mkdir(dir);
  await writeFile(join(dir, "hello.txt"), "hello from a hand-written list\n");
  await writeFile(
    join(dir, "initramfs_list"),
    [
      "# as in the kernel's own usr/gen_init_cpio usage text",
      "dir /bin 0755 0 0",
      "file /bin/busybox /bin/busybox 0755 0 0",
      "slink /bin/sh busybox 0777 0 0",
      "slink /bin/cat busybox 0777 0 0",
      "slink /bin/stat busybox 0777 0 0",
      "dir /srv 0750 0 0",
      "file /srv/hello.txt hello.txt 0644 0 0",
      "nod /srv/null 0666 0 0 c 1 3",
      "",
    ].join("\n"),
  );
  const image = join(work, "hand.cpio.gz");
  const b = await runCli([
    "build",
    `list:${join(dir, "initramfs_list")}`,
    "-o",
    image,
    "--",
    "/bin/sh",
    "-c",
    "cat /srv/hello.txt; stat -c 'node %F %t,%T %a' /srv/null; exit 7",
  ]);
  assert.equal(b.code, 0, b.stderr);
  const r = await runCli(["run", image, "--timeout", "120s"]);
  assert.equal(r.code, 7, r.stderr);
  assert.match(r.stdout, /hello from a hand-written list/);
  assert.match(r.stdout, /node character special file 1,3 666/);
});
