import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { test } from "node:test";
import { paxMember, type RawMember, rawTar } from "../../test/support/raw-tar.js";
import { nameBytes } from "../tree/path.js";
import { readTar, type TarEntry } from "./reader.js";

async function entries(tar: Buffer): Promise<(Omit<TarEntry, "body"> & { data: Buffer })[]> {
  const out = [];
  for await (const e of readTar(Readable.from([tar]))) {
    const { body, ...rest } = e;
    out.push({ ...rest, data: await buffer(Readable.from(body)) });
  }
  return out;
}

const file = (name: string | Buffer, body = "x", extra: Partial<RawMember> = {}): RawMember => ({
  name,
  body,
  ...extra,
});

test("a NUL byte in any name or link target is refused, naming the entry", async () => {
  // In a PAX record it makes the record malformed (as Go reads it): the PAX header is named.
  await assert.rejects(entries(rawTar([paxMember([["path", "..\0x"]]), file("a")])), {
    name: "Error",
    message: 'pax path "..\\x00x" contains a NUL byte',
    entry: "PaxHeaders/x",
  });
  await assert.rejects(
    entries(rawTar([paxMember([["linkpath", "etc/passwd\0junk"]]), { name: "l", type: "2" }])),
    /pax linkpath "etc\/passwd\\x00junk" contains a NUL byte/,
  );
  await assert.rejects(
    entries(rawTar([{ name: "././@LongLink", type: "L", body: "a\0b\0" }, file("short")])),
    /name contains a NUL byte/,
  );
  // The NUL that ends a GNU long name is not part of it.
  const [ok] = await entries(rawTar([{ name: "././@LongLink", type: "L", body: "long/name\0" }, file("x")]));
  assert.equal(ok!.name, "long/name");
});

test("PAX uid, gid, mtime and size are honoured", async () => {
  const [e] = await entries(
    rawTar([
      paxMember([
        ["uid", "3000000"],
        ["gid", "4294967294"],
        ["uname", "someone"],
        ["mtime", "1700000000.75"],
        ["size", "5"],
      ]),
      file("suid", "hello", { mode: 0o4755, size: 0, uid: 0, gid: 0 }),
    ]),
  );
  assert.equal(e!.uid, 3000000);
  assert.equal(e!.gid, 4294967294);
  assert.equal(e!.mtime, 1700000000);
  assert.equal(e!.mode, 0o4755);
  assert.equal(e!.data.toString(), "hello");
});

test("out-of-range owners, sizes and times are one error naming the entry", async () => {
  for (const [key, value] of [
    ["uid", "4294967295"],
    ["uid", "99999999999999999999"],
    ["gid", "-1"],
    ["uid", "12abc"],
    ["size", "1e9"],
    ["mtime", "soon"],
  ]) {
    await assert.rejects(entries(rawTar([paxMember([[key!, value!]]), file("f")])), (err: Error) => {
      assert.match(err.message, new RegExp(`^pax ${key} "${value}" is out of range`));
      assert.equal((err as { entry?: string }).entry, "f");
      return true;
    });
  }
  // A GNU base-256 uid too big for any owner.
  const big = rawTar([
    file("b", "x", {
      edit: (b) => {
        b.fill(0, 108, 116);
        b[108] = 0x80;
        b.writeUInt32BE(0xffffffff, 112);
      },
    }),
  ]);
  await assert.rejects(entries(big), /uid 4294967295 is out of range/);
});

test("unknown entry types are refused, naming type and entry; a volume label is skipped", async () => {
  await assert.rejects(entries(rawTar([file("weird", "", { type: "Z" })])), (err: Error) => {
    assert.equal(err.message, "unsupported tar entry type 'Z'");
    assert.equal((err as { entry?: string }).entry, "weird");
    return true;
  });
  await assert.rejects(entries(rawTar([file("multi", "", { type: "M" })])), /type 'M'/);
  const got = await entries(rawTar([{ name: "label", type: "V" }, file("a", "1")]));
  assert.deepEqual(
    got.map((e) => e.name),
    ["a"],
  );
});

test("xattrs from SCHILY and LIBARCHIVE records are kept as bytes", async () => {
  const cap = Buffer.from("0100000200040000000000000000000000000000", "hex");
  const [e] = await entries(
    rawTar([
      paxMember([
        ["SCHILY.xattr.security.capability", cap],
        ["LIBARCHIVE.xattr.user.note", Buffer.from("hi").toString("base64")],
      ]),
      file("ping"),
    ]),
  );
  assert.deepEqual(e!.xattrs?.get("security.capability"), cap);
  assert.deepEqual(e!.xattrs?.get("user.note"), Buffer.from("hi"));
});

test("non-UTF-8 names keep their bytes: Latin-1 é and UTF-8 é stay two names", async () => {
  const latin1 = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // "café" in Latin-1
  const utf8 = Buffer.from("café");
  const got = await entries(
    rawTar([
      file(latin1, "1"),
      file(utf8, "2"),
      paxMember([["path", Buffer.from([0x78, 0xff, 0xfe])]]),
      file("ignored", "3"),
      file(Buffer.from([0x64, 0xed, 0xb2, 0x80]), "4"), // an encoded surrogate is not UTF-8
    ]),
  );
  assert.equal(got.length, 4);
  assert.equal(new Set(got.map((e) => e.name)).size, 4);
  assert.deepEqual(nameBytes(got[0]!.name), latin1);
  assert.equal(got[1]!.name, "café");
  assert.deepEqual(nameBytes(got[2]!.name), Buffer.from([0x78, 0xff, 0xfe]));
  assert.deepEqual(nameBytes(got[3]!.name), Buffer.from([0x64, 0xed, 0xb2, 0x80]));
});

test("sparse files from GNU tar (gnu 'S', PAX 0.0, 0.1, 1.0) come out whole", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "slimroot-sparse-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // Ten data runs (more than the four an 'S' header holds, so extension blocks are used).
  const script = `
import sys
with open(sys.argv[1], "wb") as f:
    for i in range(10):
        f.seek(i * 1048576 + 100)
        f.write(b"run%d-" % i * 300)
    f.truncate(12 * 1048576 + 7)
`;
  execFileSync("python3", ["-c", script, join(dir, "holes")]);
  const want = await readFile(join(dir, "holes"));
  const formats: [string, string[]][] = [
    ["gnu", ["--format=gnu"]],
    ["0.0", ["--format=posix", "--sparse-version=0.0"]],
    ["0.1", ["--format=posix", "--sparse-version=0.1"]],
    ["1.0", ["--format=posix", "--sparse-version=1.0"]],
  ];
  for (const [label, flags] of formats) {
    const tar = execFileSync("tar", ["-C", dir, "--sparse", ...flags, "-cf", "-", "holes"], {
      maxBuffer: 64 << 20,
    });
    assert.ok(tar.length < want.length / 4, `${label}: GNU tar wrote a sparse member (${tar.length} bytes)`);
    const got = await entries(tar);
    assert.deepEqual(
      got.map((e) => [e.name, e.kind, e.size]),
      [["holes", "file", want.length]],
      label,
    );
    assert.ok(got[0]!.data.equals(want), `${label}: content matches`);
  }
});

test("a sparse map that overlaps or does not match the stored data is refused", async () => {
  const sparse = (segments: [number, number][], real: number, stored: string) =>
    rawTar([
      file("s", stored, {
        type: "S",
        magic: "gnu",
        edit: (b) => {
          segments.forEach(([off, len], i) => {
            b.write(`${off.toString(8).padStart(11, "0")}\0`, 386 + i * 24, "latin1");
            b.write(`${len.toString(8).padStart(11, "0")}\0`, 398 + i * 24, "latin1");
          });
          b.write(`${real.toString(8).padStart(11, "0")}\0`, 483, "latin1");
        },
      }),
    ]);
  const [ok] = await entries(sparse([[2, 3]], 8, "abc"));
  assert.deepEqual(ok!.data, Buffer.from("\0\0abc\0\0\0"));
  await assert.rejects(
    entries(
      sparse(
        [
          [4, 3],
          [5, 1],
        ],
        10,
        "abcd",
      ),
    ),
    /malformed sparse map/,
  );
  await assert.rejects(entries(sparse([[0, 3]], 2, "abc")), /malformed sparse map/);
  await assert.rejects(entries(sparse([[0, 2]], 8, "abc")), /2 bytes mapped, 3 stored/);
});

test("the stream is read to its end after the end-of-archive blocks", async () => {
  let ended = false;
  const tail = Readable.from(
    (async function* () {
      yield rawTar([file("a")]);
      yield Buffer.alloc(4096);
      ended = true;
    })(),
  );
  for await (const e of readTar(tail)) for await (const _ of e.body);
  assert.equal(ended, true);
});

test("global PAX records are checked, then ignored, as docker and containerd (Go's reader) do", async () => {
  const g = (records: [string, string][]) => ({ ...paxMember(records), type: "g" });
  const got = await entries(
    rawTar([
      file("a"),
      g([
        ["uid", "7"],
        ["path", "elsewhere"],
      ]),
      file("b"),
    ]),
  );
  assert.deepEqual(
    got.map((e) => [e.name, e.uid]),
    [
      ["a", 0],
      ["b", 0],
    ],
  );
  await assert.rejects(
    entries(rawTar([{ name: "g", type: "g", body: "9 x\n" }, file("a")])),
    /malformed pax/,
  );
});

test("links, devices and directories are header-only whatever their size says, as Go's reader does", async () => {
  // A symlink claiming 512 bytes: the block after it is the next header, not its data.
  const got = await entries(rawTar([{ name: "l", type: "2", linkname: "t", size: 512 }, file("next", "n")]));
  assert.deepEqual(
    got.map((e) => [e.name, e.kind]),
    [
      ["l", "symlink"],
      ["next", "file"],
    ],
  );
});

// Issue 17, item 15: where formats leave a choice, read as Go's archive/tar (docker, containerd).
test("a GNU long name beats a PAX path, and a GNU long link a PAX linkpath, as Go reads them", async () => {
  const got = await entries(
    rawTar([
      { name: "././@LongLink", type: "L", body: "gnu/name\0" },
      { name: "././@LongLink", type: "K", body: "gnu/target\0" },
      paxMember([
        ["path", "pax/name"],
        ["linkpath", "pax/target"],
      ]),
      { name: "short", type: "2", linkname: "short-target" },
    ]),
  );
  assert.deepEqual(
    got.map((e) => [e.name, e.linkname]),
    [["gnu/name", "gnu/target"]],
  );
});

test("one zero block and then more entries is refused (Go: invalid header), not an end", async () => {
  const a = rawTar([file("a")]).subarray(0, 1024);
  const hidden = rawTar([file("hidden")]);
  await assert.rejects(entries(Buffer.concat([a, Buffer.alloc(512), hidden])), (err: Error) => {
    assert.equal(err.message, "a single zero block at byte 1024 is followed by more data");
    assert.equal((err as { entry?: string }).entry, "a");
    return true;
  });
  // One zero block at the very end of the stream is an end (Go too).
  assert.deepEqual(
    (await entries(Buffer.concat([a, Buffer.alloc(512)]))).map((e) => e.name),
    ["a"],
  );
});

test("a LIBARCHIVE xattr name is decoded as libarchive does, kept as bytes; one with NUL is refused naming the entry", async () => {
  const xattr = (key: string) => rawTar([paxMember([[`LIBARCHIVE.xattr.${key}`, "aGk="]]), file("f")]);
  const [e] = await entries(xattr("user.%zz%41%"));
  assert.deepEqual([...e!.xattrs!.keys()], ["user.%zzA%"]);
  const [b] = await entries(xattr("user.%ff"));
  assert.deepEqual([...b!.xattrs!.keys()], ["user.\udcff"]);
  await assert.rejects(entries(xattr("user.%00")), (err: Error) => {
    assert.equal(err.constructor.name, "TarFormatError");
    assert.match(err.message, /^bad xattr name "user\.\\x00"$/);
    assert.equal((err as { entry?: string }).entry, "f");
    return true;
  });
});

test("a global header or a volume label ends what the metadata before it said (Go returns each as an entry)", async () => {
  const got = await entries(
    rawTar([
      { name: "././@LongLink", type: "L", body: "lost\0" },
      { name: "label", type: "V" },
      paxMember([["path", "lost-too"]]),
      { ...paxMember([]), type: "g" },
      file("kept"),
    ]),
  );
  assert.deepEqual(
    got.map((e) => e.name),
    ["kept"],
  );
});
