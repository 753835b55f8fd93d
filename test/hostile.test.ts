// Hostile and broken input: one clear line, a non-zero exit, nothing written outside, and an
// existing output file left exactly as it was.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";
import { type CpioEntry, readCpio } from "../src/cpio/reader.js";
import { nameBytes } from "../src/tree/path.js";
import { runCli, startCli } from "./support/cli.js";
import { type LayerEntry, tarOf, writeOciLayout } from "./support/layers.js";
import { paxMember, type RawMember, rawTar } from "./support/raw-tar.js";

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-hostile-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const PREVIOUS = "previous output, must survive\n";

async function expectRefused(source: string, pattern: RegExp, extra: string[] = [], code = 1) {
  const outDir = await mkdtemp(join(work, "out-"));
  const out = join(outDir, "image.cpio.gz");
  await writeFile(out, PREVIOUS);
  const r = await runCli(["build", source, "-o", out, "--entrypoint", "/bin/true", ...extra]);
  assert.equal(r.code, code, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.equal(await readFile(out, "utf8"), PREVIOUS);
  assert.deepEqual(await readdir(outDir), ["image.cpio.gz"], "no temp file left behind");
  return lines[0]!;
}

async function layout(name: string, layers: LayerEntry[][], gzip = true) {
  const dir = join(work, name);
  await writeOciLayout(dir, { layers: await Promise.all(layers.map(tarOf)), gzip });
  return `oci:${dir}:latest`;
}

test("an entry climbing out with ../ is refused and nothing lands outside", async () => {
  const src = await layout("dotdot", [[{ name: "../../x", body: "escaped" }]]);
  await expectRefused(src, /entry \.\.\/\.\.\/x: .*escapes the image root/);
  assert.equal(existsSync(join(work, "x")), false);
  assert.equal(existsSync("/x"), false);
});

test("a file written through an absolute symlink is refused", async () => {
  const src = await layout("through", [
    [{ name: "evil", type: "symlink", linkname: "/tmp" }],
    [{ name: "evil/planted", body: "owned" }],
  ]);
  await expectRefused(src, /entry evil\/planted: written through symlink evil -> \/tmp/);
  assert.equal(existsSync("/tmp/planted"), false);
});

test("a hard link to the host's /etc/passwd is refused", async () => {
  const src = await layout("hardlink", [[{ name: "passwd", type: "link", linkname: "/etc/passwd" }]]);
  await expectRefused(src, /entry passwd: hard link target \/etc\/passwd is not in the image/);
  const up = await layout("hardlink-up", [[{ name: "p", type: "link", linkname: "../../../etc/passwd" }]]);
  await expectRefused(up, /escapes the image root/);
});

test("a truncated gzip layer names the layer", async () => {
  const dir = join(work, "trunc-gz");
  await writeOciLayout(dir, {
    layers: [await tarOf([{ name: "a", body: "x".repeat(100_000) }])],
    gzip: true,
  });
  // Cut the layer blob in half in place (its digest no longer matches either, and either error is fine).
  const blobs = join(dir, "blobs", "sha256");
  const index = JSON.parse(await readFile(join(dir, "index.json"), "utf8"));
  const manifest = JSON.parse(await readFile(join(blobs, index.manifests[0].digest.slice(7)), "utf8"));
  const layerFile = join(blobs, manifest.layers[0].digest.slice(7));
  const data = await readFile(layerFile);
  await writeFile(layerFile, data.subarray(0, data.length >> 1));
  await expectRefused(`oci:${dir}:latest`, /layer sha256:[0-9a-f]{64} of oci:.*(truncated|digest mismatch)/);
});

test("a tar header claiming more bytes than follow is refused", async () => {
  const tar = await tarOf([{ name: "big", body: "y".repeat(4096) }]);
  const cut = tar.subarray(0, 512 + 1000);
  const file = join(work, "cut.tar");
  await writeFile(file, cut);
  await expectRefused(`tar:${file}`, /tar:.*cut\.tar: truncated tar: entry big is cut short/);
  const gz = join(work, "cut.tar.gz");
  await writeFile(gz, gzipSync(cut));
  await expectRefused(`tar:${gz}`, /tar:.*cut\.tar\.gz: truncated tar: entry big is cut short/);
});

test("an unknown --platform lists what the image has", async () => {
  const src = await layout("platform", [[{ name: "a", body: "a" }]]);
  // A single-platform layout has nothing to choose from: the request is checked against it.
  await expectRefused(src, /no image for platform linux\/s390x; available: linux\/amd64/, [
    "--platform",
    "linux/s390x",
  ]);
});

test("bad flags and sources exit 1 with one line", async () => {
  await expectRefused("nosuch:thing", /unknown image source/);
  await expectRefused(`oci:${join(work, "missing")}`, /not an OCI layout/);
  await expectRefused("dir:/nonexistent/dir", /\/nonexistent\/dir: no such file or directory/);
  await expectRefused("tar:/nonexistent.tar", /no such file/);
  await expectRefused(
    await layout("flags", [[{ name: "a", body: "a" }]]),
    /option '--compress <kind>' argument 'rar' is invalid/,
    ["--compress", "rar"],
  );
});

test("Ctrl-C during a build leaves the previous output and no temp files or spool behind", async () => {
  const tmp = await mkdtemp(join(work, "tmp-"));
  const outDir = await mkdtemp(join(work, "out-"));
  const out = join(outDir, "big.cpio.xz");
  await writeFile(out, PREVIOUS);
  // A layer big enough that the build is still running when the signal comes.
  const src = await layout("interrupt", [
    Array.from({ length: 40 }, (_, i) => ({ name: `f${i}`, body: randomBytes(1 << 20) })),
  ]);
  const build = startCli(["build", src, "-o", out, "--entrypoint", "/bin/true"], { TMPDIR: tmp });
  const deadline = Date.now() + 30_000;
  const spools = async () => (await readdir(tmp)).filter((f) => f.startsWith("slimroot-spool-"));
  while ((await spools()).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal((await spools()).length, 1, "the build started spooling");
  build.child.kill("SIGINT");
  assert.equal(await build.exited, 130, build.stderr);
  assert.equal(await readFile(out, "utf8"), PREVIOUS);
  assert.deepEqual(await readdir(outDir), ["big.cpio.xz"]);
  assert.deepEqual(await spools(), [], "the spool is gone");
});

/** A tar: source holding exactly these hand-made members. */
async function rawSource(name: string, members: RawMember[]) {
  const file = join(work, `${name}.tar`);
  await writeFile(file, rawTar(members));
  return `tar:${file}`;
}

/** Builds an uncompressed cpio (no minimizing); returns its entries by name and the stderr. */
async function buildEntries(source: string, extra: string[] = ["--entrypoint", "/bin/true"]) {
  const out = join(await mkdtemp(join(work, "ok-")), "image.cpio");
  const r = await runCli(["build", source, "-o", out, ...extra]);
  assert.equal(r.code, 0, r.stderr);
  const entries = new Map<string, CpioEntry>();
  for await (const e of readCpio(createReadStream(out))) entries.set(e.name, e);
  return { entries, stderr: r.stderr, out };
}

test("a NUL byte in a PAX path or linkpath is refused, naming the layer and the entry", async () => {
  await expectRefused(
    await rawSource("nul-path", [paxMember([["path", "..\0x"]]), { name: "x", body: "owned", mode: 0o777 }]),
    // Refused at the PAX header, as Go refuses it (a record that cannot hold a name).
    /^slimroot: layer tar:.*nul-path\.tar: entry PaxHeaders\/x: pax path "\.\.\\x00x" contains a NUL byte$/,
  );
  await expectRefused(
    await rawSource("nul-link", [paxMember([["linkpath", "etc/passwd\0junk"]]), { name: "l", type: "2" }]),
    /layer tar:.*nul-link\.tar: entry PaxHeaders\/x: pax linkpath "etc\/passwd\\x00junk" contains a NUL byte$/,
  );
});

test("PAX uid and gid are honoured: a setuid file owned by 3000000 stays so; -1 is refused", async () => {
  const { entries } = await buildEntries(
    await rawSource("pax-uid", [
      paxMember([
        ["uid", "3000000"],
        ["gid", "4294967294"],
        ["mtime", "1700000000.5"],
      ]),
      { name: "suid", body: "#!/bin/sh\n", mode: 0o4755 },
    ]),
  );
  const e = entries.get("suid")!;
  assert.equal(e.uid, 3000000);
  assert.equal(e.gid, 4294967294);
  assert.equal(e.mode & 0o7777, 0o4755);
  await expectRefused(
    await rawSource("pax-uid-bad", [
      paxMember([["uid", "4294967295"]]),
      { name: "suid", body: "x", mode: 0o4755 },
    ]),
    /layer tar:.*: entry suid: pax uid "4294967295" is out of range \(0 to 4294967294\)$/,
  );
});

test("sparse files are expanded, not left as GNUSparseFile.N/ entries", async () => {
  const dir = await mkdtemp(join(work, "sparse-"));
  execFileSync("python3", [
    "-c",
    "import sys\nf=open(sys.argv[1],'wb')\nf.seek(70000)\nf.write(b'middle')\nf.truncate(300000)",
    join(dir, "holes"),
  ]);
  const want = await readFile(join(dir, "holes"));
  for (const v of ["0.0", "0.1", "1.0"]) {
    const file = join(work, `sparse-${v}.tar`);
    execFileSync("tar", [
      "-C",
      dir,
      "--format=posix",
      "--sparse",
      `--sparse-version=${v}`,
      "-cf",
      file,
      "holes",
    ]);
    const { entries } = await buildEntries(`tar:${file}`);
    assert.deepEqual(
      [...entries.keys()].filter((n) => n.includes("GNUSparse")),
      [],
      v,
    );
    assert.ok(entries.get("holes")?.body.equals(want), `sparse ${v}: content`);
  }
});

test("non-UTF-8 names keep their bytes through to the cpio (GNU cpio extracts two files)", async () => {
  const latin1 = Buffer.from([0x63, 0x61, 0x66, 0xe9]);
  const { entries, out } = await buildEntries(
    await rawSource("latin1", [
      { name: latin1, body: "latin1" },
      { name: "café", body: "utf8" },
      { name: "link", type: "2", linkname: latin1 },
    ]),
  );
  const names = [...entries.keys()].filter((n) => n.startsWith("caf"));
  assert.equal(names.length, 2);
  assert.deepEqual(names.map((n) => nameBytes(n).toString("hex")).sort(), ["636166c3a9", "636166e9"]);
  assert.deepEqual(entries.get("link")!.body, latin1);
  const x = await mkdtemp(join(work, "x-"));
  execFileSync("sh", ["-c", `cd ${x} && cpio -idm --quiet < ${out}`]);
  const onDisk = (await readdir(x, { encoding: "buffer" })).filter(
    (n) => n.subarray(0, 3).toString() === "caf",
  );
  assert.deepEqual(onDisk.map((n) => n.toString("hex")).sort(), ["636166c3a9", "636166e9"]);
});

test("a dir: source keeps non-UTF-8 names and link targets as bytes", async () => {
  const root = await mkdtemp(join(work, "bytes-dir-"));
  const latin1 = Buffer.from([0x63, 0x61, 0x66, 0xe9]);
  await writeFile(Buffer.concat([Buffer.from(`${root}/`), latin1]), "latin1");
  await writeFile(join(root, "café"), "utf8");
  await symlink(latin1, Buffer.from(`${root}/link`));
  const { entries } = await buildEntries(`dir:${root}`);
  const names = [...entries.keys()].filter((n) => n.startsWith("caf"));
  assert.deepEqual(names.map((n) => nameBytes(n).toString("hex")).sort(), ["636166c3a9", "636166e9"]);
  assert.equal(entries.get(names.find((n) => nameBytes(n).length === 4)!)!.body.toString(), "latin1");
  assert.deepEqual(entries.get("link")!.body, latin1);
});

async function appConf(config: Record<string, unknown>) {
  const dir = join(work, `conf-${Math.random().toString(36).slice(2)}`);
  await writeOciLayout(dir, { layers: [await tarOf([{ name: "bin/app", body: "x", mode: 0o755 }])], config });
  const { entries } = await buildEntries(`oci:${dir}:latest`, []);
  return entries.get("etc/slimroot/app.conf")!.body.toString();
}

test("a string Entrypoint runs through /bin/sh -c as the Dockerfile shell form; a mixed array is refused", async () => {
  const conf = await appConf({ Entrypoint: "/bin/app --flag", Cmd: null });
  assert.match(conf, /^arg \/bin\/sh\narg -c\narg \/bin\/app --flag\n/m);
  assert.match(await appConf({ Entrypoint: "/bin/app", Cmd: ["x"] }), /^arg \/bin\/app\narg x\n/m);
  const dir = join(work, "mixed");
  await writeOciLayout(dir, {
    layers: [await tarOf([{ name: "a", body: "a" }])],
    config: { Entrypoint: ["/bin/app", 1] },
  });
  const out = join(await mkdtemp(join(work, "out-")), "i.cpio");
  const r = await runCli(["build", `oci:${dir}:latest`, "-o", out]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(
    r.stderr.trim(),
    /^slimroot: oci:.*mixed:latest: config: (config\.)?Entrypoint(\[1\])? must be (a )?string/,
  );
});

test("Env entries without = are dropped, as dockerd unsets them", async () => {
  const conf = await appConf({ Entrypoint: ["/bin/app"], Env: ["LONELY", "=x", "KEEP=1"] });
  assert.match(conf, /^env KEEP=1$/m);
  assert.doesNotMatch(conf, /LONELY|env =x/);
});

test("xattrs are kept in the tree and the cpio build warns once, naming the files", async () => {
  const cap = Buffer.from("0100000200040000000000000000000000000000", "hex");
  const { stderr, entries } = await buildEntries(
    await rawSource("xattr", [
      paxMember([["SCHILY.xattr.security.capability", cap]]),
      { name: "bin/ping", body: "elf", mode: 0o755 },
      paxMember([["SCHILY.xattr.user.x", "1"]]),
      { name: "etc/f", body: "f" },
    ]),
  );
  assert.ok(entries.has("bin/ping"));
  const warnings = stderr.split("\n").filter((l) => l.includes("extended attributes"));
  assert.equal(warnings.length, 1, stderr);
  assert.match(
    warnings[0]!,
    /^slimroot: warning: newc cpio cannot hold extended attributes; dropped those of \/bin\/ping, \/etc\/f/,
  );
});

test("xattrs from a layer reach a disk image: security.capability on ext4, no warning", async () => {
  const cap = Buffer.from("0100000200040000000000000000000000000000", "hex");
  const src = await rawSource("xattr-disk", [
    paxMember([["SCHILY.xattr.security.capability", cap]]),
    { name: "bin/ping", body: "elf", mode: 0o755 },
  ]);
  const out = join(await mkdtemp(join(work, "disk-")), "image.ext4");
  const r = await runCli(["build", src, "-o", out, "--entrypoint", "/bin/ping"]);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /extended attributes/);
  const got = execFileSync("debugfs", ["-R", "ea_get -x /bin/ping security.capability", out], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
  // "security.capability (20) = 01 00 00 02 ...": the bytes after the "=".
  assert.equal(
    got
      .slice(got.indexOf("=") + 1)
      .replace(/[^0-9a-f]/gi, "")
      .toLowerCase(),
    cap.toString("hex"),
  );
});

test("an entry of an unknown tar type is refused, naming the type, layer and entry", async () => {
  await expectRefused(
    await rawSource("unknown-type", [{ name: "weird", type: "Z" }]),
    /layer tar:.*unknown-type\.tar: entry weird: unsupported tar entry type 'Z'$/,
  );
});

test("malformed whiteouts are refused", async () => {
  for (const [i, name] of [".wh..", ".wh...", ".wh.", "etc/.wh..wh.plnk"].entries()) {
    const src = await layout(`wh-${i}`, [[{ name: "etc/passwd", body: "root" }], [{ name, body: "" }]]);
    await expectRefused(src, /entry .*: malformed whiteout/);
  }
});

test("a file too big for newc is refused at its header, before its body is read", async () => {
  // Only the header: a build that spooled the body first would report a truncated tar instead.
  const file = join(work, "huge.tar");
  await writeFile(file, rawTar([{ name: "huge", size: 5 * 2 ** 30 }]).subarray(0, 512));
  await expectRefused(
    `tar:${file}`,
    /entry huge: 5368709120-byte file is larger than newc cpio can hold \(4294967295 bytes\)$/,
  );
});
