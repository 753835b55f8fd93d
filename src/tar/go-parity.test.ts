// Differential test of slimroot's tar reader against Go's archive/tar, which docker and
// containerd unpack layers with (issue 17, item 15). Generated archives, valid and damaged:
// either both readers accept them with identical entries, or both refuse (slimroot in one
// line naming the entry), or slimroot refuses for one of the reasons listed in INTENDED.
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import fc from "fast-check";
import { octalField, paxBody, type RawMember, rawHeader } from "../../test/support/raw-tar.js";
import { displayName, nameBytes } from "../tree/path.js";
import { cacheRoot } from "../util/cache-dir.js";
import { MAX_ID, readTar, tarErrorText } from "./reader.js";

/** Reads framed archives (4-byte big-endian length, bytes) and prints one JSON line for each. */
const HARNESS = `package main

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"sort"
	"strings"
	"bytes"
)

type entry struct {
	Name     []byte      \`json:"name"\`
	Linkname []byte      \`json:"linkname"\`
	Type     int         \`json:"type"\`
	Mode     int64       \`json:"mode"\`
	Uid      int         \`json:"uid"\`
	Gid      int         \`json:"gid"\`
	Size     int64       \`json:"size"\`
	Mtime    int64       \`json:"mtime"\`
	Devmajor int64       \`json:"devmajor"\`
	Devminor int64       \`json:"devminor"\`
	Xattrs   [][2][]byte \`json:"xattrs"\`
	Libarchive [][2][]byte \`json:"libarchive"\`
	Body     string      \`json:"body"\`
}

type result struct {
	Entries []entry \`json:"entries"\`
	Error   *string \`json:"error"\`
}

func read(archive []byte) result {
	res := result{Entries: []entry{}}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return res
		}
		if err != nil {
			s := err.Error()
			res.Error = &s
			return res
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			s := err.Error()
			res.Error = &s
			return res
		}
		e := entry{Name: []byte(h.Name), Linkname: []byte(h.Linkname), Type: int(h.Typeflag), Mode: h.Mode,
			Uid: h.Uid, Gid: h.Gid, Size: h.Size, Mtime: h.ModTime.Unix(), Devmajor: h.Devmajor,
			Devminor: h.Devminor, Body: hex.EncodeToString(sum.Sum(nil)), Xattrs: [][2][]byte{}, Libarchive: [][2][]byte{}}
		for k, v := range h.PAXRecords {
			if v == "" {
				continue
			}
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				e.Xattrs = append(e.Xattrs, [2][]byte{[]byte(k[13:]), []byte(v)})
			} else if strings.HasPrefix(k, "LIBARCHIVE.xattr.") {
				e.Libarchive = append(e.Libarchive, [2][]byte{[]byte(k[17:]), []byte(v)})
			}
		}
		for _, l := range [][][2][]byte{e.Xattrs, e.Libarchive} {
			sort.Slice(l, func(i, j int) bool { return string(l[i][0]) < string(l[j][0]) })
		}
		res.Entries = append(res.Entries, e)
	}
}

func main() {
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	for {
		var n uint32
		if err := binary.Read(in, binary.BigEndian, &n); err != nil {
			return
		}
		archive := make([]byte, n)
		if _, err := io.ReadFull(in, archive); err != nil {
			return
		}
		line, _ := json.Marshal(read(archive))
		out.Write(append(line, '\\n'))
		out.Flush()
	}
}
`;

interface GoEntry {
  name: string | null;
  linkname: string | null;
  type: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  devmajor: number;
  devminor: number;
  xattrs: [string, string][];
  libarchive: [string, string][];
  body: string;
}

/** One entry as both sides are compared: bytes as hex, only what a runtime unpacks. */
interface Seen {
  kind: string;
  name: string;
  linkname: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  size?: number;
  body?: string;
  dev: [number, number];
  xattrs: [string, string][];
}

interface Outcome {
  entries: Seen[];
  error?: string;
  /** Go's view of the entry after the first n (for the intended differences). */
  at?: (n: number) => Seen[];
}

const GO_KINDS: Record<string, string> = {
  "0": "file",
  "7": "file",
  S: "file",
  "1": "link",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "dir",
  D: "dir",
  "6": "fifo",
};

const hex = (b: Buffer) => b.toString("hex");
const b64hex = (s: string | null) => hex(Buffer.from(s ?? "", "base64"));

/** libarchive's url_decode, as an independent oracle for LIBARCHIVE.xattr names. */
function urlDecode(s: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const pair = s.toString("latin1", i + 1, i + 3);
    if (s[i] === 0x25 && /^[0-9a-fA-F]{2}$/.test(pair)) {
      out.push(Number.parseInt(pair, 16));
      i += 2;
    } else out.push(s[i]!);
  }
  return Buffer.from(out);
}

function seenOfGo(e: GoEntry): Seen {
  const kind = GO_KINDS[String.fromCharCode(e.type)] ?? `unknown ${e.type}`;
  const xattrs = new Map<string, string>();
  for (const [k, v] of e.libarchive)
    xattrs.set(
      hex(urlDecode(Buffer.from(k, "base64"))),
      hex(Buffer.from(Buffer.from(v, "base64").toString("latin1"), "base64")),
    );
  for (const [k, v] of e.xattrs) xattrs.set(b64hex(k), b64hex(v));
  return {
    kind,
    name: b64hex(e.name),
    linkname: b64hex(e.linkname),
    mode: e.mode & 0o7777,
    uid: e.uid,
    gid: e.gid,
    mtime: e.mtime,
    ...(kind === "file" ? { size: e.size, body: e.body } : {}),
    dev: [e.devmajor, e.devminor],
    xattrs: [...xattrs].sort(),
  };
}

function goOutcome(line: string): Outcome {
  const r = JSON.parse(line) as { entries: GoEntry[]; error: string | null };
  // A global header is an entry to Go that docker and containerd skip; a volume label names the
  // archive. Neither is a file: slimroot does not yield them.
  const read = r.entries.filter((e) => e.type !== 0x67);
  const all = read.map(seenOfGo);
  const kept = all.filter((_, i) => read[i]!.type !== 0x56);
  // What slimroot may have stopped at after n entries: the next one, or a label before it
  // (slimroot reads labels too).
  const at = (n: number) => {
    const from = n === 0 ? 0 : all.indexOf(kept[n - 1]!) + 1;
    const to = n < kept.length ? all.indexOf(kept[n]!) + 1 : all.length;
    return all.slice(from, to);
  };
  return { entries: kept, ...(r.error !== null ? { error: r.error } : {}), at };
}

async function slimrootOutcome(archive: Buffer): Promise<Outcome> {
  const entries: Seen[] = [];
  let current: string | undefined;
  try {
    for await (const e of readTar(Readable.from([archive]))) {
      current = displayName(e.name);
      const sum = createHash("sha256");
      for await (const chunk of e.body) sum.update(chunk);
      entries.push({
        kind: e.kind,
        name: hex(nameBytes(e.name)),
        linkname: hex(nameBytes(e.linkname)),
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        mtime: e.mtime,
        ...(e.kind === "file" ? { size: e.size, body: sum.digest("hex") } : {}),
        dev: [e.devmajor, e.devminor],
        xattrs: [...(e.xattrs ?? [])].map(([k, v]) => [hex(nameBytes(k)), hex(v)] as [string, string]).sort(),
      });
    }
  } catch (err) {
    const text = tarErrorText(err, current);
    if (text === undefined) throw err;
    return { entries, error: text };
  }
  return { entries };
}

/**
 * Where slimroot refuses what Go accepts, on purpose. (Names that climb out with `..` or go
 * through symlinks are read alike here: applyLayer refuses them, as containerd does, after
 * the reader; that is not a difference between readers.) `go` is Go's view of the entry slimroot
 * refused must pass `go`.
 */
const INTENDED: { refusal: RegExp; why: string; go: (e: Seen) => boolean }[] = [
  {
    refusal: /unsupported tar entry type/,
    why: "Go returns any typeflag; a runtime then fails on it or skips it, so its file would be missing in one and present in the other: slimroot refuses it at once",
    go: (e) => e.kind.startsWith("unknown"),
  },
  {
    refusal: /(name|link target) contains a NUL byte/,
    why: "Go cuts a GNU long name (or a GNU.sparse.name) at its first NUL; the bytes after it are a name some other tool sees: refused rather than guessed",
    go: () => true,
  },
  {
    refusal: /(uid|gid) \S+ is out of range/,
    why: "an owner outside 0..2^32-2 wraps when chown'd ((uid_t)-1 means 'unchanged'); Go keeps any int64",
    go: (e) => e.uid < 0 || e.uid > MAX_ID || e.gid < 0 || e.gid > MAX_ID,
  },
  {
    refusal: /dev(major|minor) \S+ is out of range/,
    why: "a device number no kernel can hold (32 bits); Go keeps any int64",
    go: (e) => e.dev.some((v) => v < 0 || v > 0xffffffff),
  },
  {
    refusal: /(size|mtime) \S+ is out of range/,
    why: "a size or time past 2^53 cannot be held exactly (no filesystem slimroot writes holds such a time; no archive holds such a file)",
    go: (e) => !Number.isSafeInteger(e.mtime) || !Number.isSafeInteger(e.size ?? 0),
  },
  {
    refusal: /bad xattr name|empty xattr name/,
    why: "an empty xattr name (or one with NUL) cannot be set at all; Go keeps it (or ignores LIBARCHIVE records)",
    go: () => true,
  },
];

/** A member with the metadata members that go before it. */
interface Spec {
  member: RawMember & { ext?: Buffer };
  before: RawMember[];
}

const nameArb = fc.oneof(
  fc.constantFrom("a", "dir/", "dir/f", "./x", "a b", "café", "x/../y"),
  fc.uint8Array({ minLength: 1, maxLength: 12 }).map((a) => Buffer.from(a.map((b) => b || 0x41))),
  fc.integer({ min: 95, max: 160 }).map((n) => `${"L".repeat(n - 2)}/z`),
);
const asBuf = (n: string | Buffer) => (typeof n === "string" ? Buffer.from(n) : n);

const paxRecordArb: fc.Arbitrary<[string, string | Buffer]> = fc.oneof(
  fc.tuple(
    fc.constantFrom("uid", "gid"),
    fc.constantFrom("0", "1000", "3000000", "007", "+7", "-1", "4294967295", "12a", ""),
  ),
  fc.tuple(
    fc.constantFrom("mtime", "atime", "ctime"),
    fc.constantFrom(
      "1700000000",
      "1700000000.123456789",
      "-1.5",
      "-2",
      "5.",
      "1.x",
      "-0.25",
      "0.0000000001",
      "",
    ),
  ),
  fc.tuple(fc.constant("size"), fc.constantFrom("0", "1", "600", "+3", "-1", "x")),
  fc.tuple(fc.constant("path"), nameArb),
  fc.tuple(fc.constant("linkpath"), nameArb),
  fc.tuple(fc.constant("uname"), fc.constantFrom("root", "")),
  fc.tuple(
    fc.constantFrom(
      "SCHILY.xattr.user.a",
      "SCHILY.xattr.security.capability",
      "SCHILY.xattr.",
      "SCHILY.xattr.user.\xff",
    ),
    fc.constantFrom("v", "", "\x01\x00\x02"),
  ),
  fc.tuple(
    fc.constantFrom(
      "LIBARCHIVE.xattr.user.b",
      "LIBARCHIVE.xattr.user%2Ec",
      "LIBARCHIVE.xattr.user.%zz",
      "LIBARCHIVE.xattr.user.%ff",
      "LIBARCHIVE.xattr.user.a",
    ),
    fc.constantFrom("aGk=", "", "AAE="),
  ),
);

const plainArb: fc.Arbitrary<Spec> = fc
  .record({
    type: fc.constantFrom("0", "0", "0", "\0", "7", "1", "2", "3", "4", "5", "6", "D", "Z", "V", "g"),
    name: nameArb,
    linkname: fc.constantFrom("", "a", "../etc/passwd", "t".repeat(100)),
    body: fc.uint8Array({ maxLength: 1100 }).map((a) => Buffer.from(a)),
    mode: fc.constantFrom(0o644, 0o755, 0o4755, 0o100644),
    uid: fc.constantFrom(0, 1000, 65534, 0o7777777),
    mtime: fc.constantFrom(0, 1_600_000_000, 0o77777777777),
    magic: fc.constantFrom<"ustar" | "gnu" | "v7" | "star">("ustar", "gnu", "v7", "star"),
    prefix: fc.constantFrom("", "", "pre/fix", "\xe9t\xe9"),
    how: fc.constantFrom("header", "L", "pax", "both", "K"),
    altName: nameArb,
    pax: fc.array(paxRecordArb, { maxLength: 4 }),
    base256: fc.subarray(["uid", "gid", "size", "mtime", "negative mtime"]),
  })
  .map((s) => {
    const before: RawMember[] = [];
    const name = asBuf(s.name);
    if (s.how === "L" || s.how === "both")
      before.push({
        name: "././@LongLink",
        type: "L",
        body: Buffer.concat([name, Buffer.from([0])]),
        magic: "gnu",
      });
    if (s.how === "K")
      before.push({ name: "././@LongLink", type: "K", body: asBuf(s.altName), magic: "gnu" });
    const records = [...s.pax];
    if (s.how === "pax" || s.how === "both") records.unshift(["path", s.how === "both" ? s.altName : name]);
    if (records.length) before.push({ name: "PaxHeaders/x", type: "x", body: paxBody(records) });
    const body = s.type === "g" ? paxBody(s.pax) : s.body;
    const member: RawMember = {
      name: name.subarray(0, 100),
      type: s.type,
      body,
      linkname: s.linkname,
      mode: s.mode,
      uid: s.uid,
      mtime: s.mtime,
      ...(s.magic === "gnu" ? { magic: "gnu" as const } : {}),
      edit: (b) => {
        if (s.magic === "v7") b.fill(0, 257, 265);
        if (s.magic === "star") b.write("tar\0", 508, "latin1");
        // A ustar prefix; in a GNU header those bytes are its atime and ctime (Go reads them
        // as a prefix when they do not parse).
        b.write(s.prefix, 345, "latin1");
        for (const f of s.base256) base256(b, f, body.length);
      },
    };
    return { member, before };
  });

/** Rewrites a numeric field in GNU base-256 (the same value, or a negative mtime). */
function base256(b: Buffer, field: string, size: number) {
  const at = { uid: 108, gid: 116, size: 124, mtime: 136, "negative mtime": 136 }[field]!;
  const len = at < 124 ? 8 : 12;
  const octal = Number.parseInt(b.toString("latin1", at, at + len).replace(/\0.*/s, ""), 8);
  const value = field === "size" ? size : field === "negative mtime" ? -5 : octal;
  b.fill(value < 0 ? 0xff : 0, at, at + len);
  if (value >= 0) b.writeUIntBE(value, at + len - 6, 6);
  else b.writeIntBE(value, at + len - 6, 6);
  b[at] = value < 0 ? 0xff : 0x80;
}

/** GNU sparse files in the four formats GNU tar writes, with 0-4 data runs. */
const sparseArb: fc.Arbitrary<Spec> = fc
  .record({
    format: fc.constantFrom("old", "0.0", "0.1", "1.0"),
    runs: fc.array(fc.tuple(fc.integer({ min: 0, max: 700 }), fc.integer({ min: 0, max: 600 })), {
      maxLength: 30,
    }),
    tail: fc.integer({ min: 0, max: 900 }),
    name: fc.constantFrom("sparse", "dir/holes"),
  })
  .map(({ format, runs, tail, name }) => {
    const map: [number, number][] = [];
    let pos = 0;
    for (const [gap, len] of runs) {
      map.push([pos + gap, len]);
      pos += gap + len;
    }
    const size = pos + tail;
    const data = Buffer.alloc(
      map.reduce((n, [, l]) => n + l, 0),
      0x61 + map.length,
    );
    const records: [string, string][] = [];
    let body = data;
    if (format === "0.0") {
      records.push(["GNU.sparse.size", String(size)], ["GNU.sparse.numblocks", String(map.length)]);
      for (const [o, l] of map)
        records.push(["GNU.sparse.offset", String(o)], ["GNU.sparse.numbytes", String(l)]);
    } else if (format === "0.1") {
      records.push(
        ["GNU.sparse.major", "0"],
        ["GNU.sparse.minor", "1"],
        ["GNU.sparse.name", name],
        ["GNU.sparse.realsize", String(size)],
        ["GNU.sparse.numblocks", String(map.length)],
        ["GNU.sparse.map", map.flat().join(",")],
      );
    } else if (format === "1.0") {
      records.push(
        ["GNU.sparse.major", "1"],
        ["GNU.sparse.minor", "0"],
        ["GNU.sparse.name", name],
        ["GNU.sparse.realsize", String(size)],
      );
      const text = Buffer.from(`${[map.length, ...map.flat()].join("\n")}\n`);
      body = Buffer.concat([text, Buffer.alloc((512 - (text.length % 512)) % 512), data]);
    }
    const member: Spec["member"] =
      format === "old"
        ? {
            name,
            type: "S",
            magic: "gnu",
            body,
            edit: (b) => {
              sparseEntries(b, 386, map.slice(0, 4));
              octalField(b, 483, 12, size);
              if (map.length > 4) b[482] = 1;
            },
            // Runs past the header's four go in extension blocks of 21, before the data.
            ext: Buffer.concat(
              Array.from({ length: Math.ceil((map.length - 4) / 21) }, (_, i) => {
                const block = Buffer.alloc(512);
                sparseEntries(block, 0, map.slice(4 + i * 21, 4 + (i + 1) * 21));
                if (map.length > 4 + (i + 1) * 21) block[504] = 1;
                return block;
              }),
            ),
          }
        : { name: `GNUSparseFile.0/${name}`, body };
    return {
      member,
      before: records.length ? [{ name: "PaxHeaders/s", type: "x", body: paxBody(records) }] : [],
    };
  });

function sparseEntries(b: Buffer, at: number, runs: [number, number][]) {
  runs.forEach(([o, l], i) => {
    octalField(b, at + i * 24, 12, o);
    octalField(b, at + 12 + i * 24, 12, l);
  });
}

const endArb = fc.constantFrom(
  "two zero blocks",
  "two zero blocks",
  "one zero block",
  "none",
  "zero block then entry",
  "garbage after end",
);

interface Built {
  archive: Buffer;
  /** Offsets of header blocks, for damage that keeps the checksum right. */
  headers: number[];
}

function build(specs: Spec[], end: string): Built {
  const parts: Buffer[] = [];
  const headers: number[] = [];
  let at = 0;
  const put = (m: RawMember & { ext?: Buffer }) => {
    const body = m.body === undefined ? Buffer.alloc(0) : asBuf(m.body);
    headers.push(at);
    const ext = m.ext ?? Buffer.alloc(0);
    for (const p of [rawHeader(m), ext, body, Buffer.alloc((512 - (body.length % 512)) % 512)]) {
      parts.push(p);
      at += p.length;
    }
  };
  for (const s of specs) {
    s.before.forEach(put);
    put(s.member);
  }
  if (end === "two zero blocks" || end === "garbage after end") parts.push(Buffer.alloc(1024));
  if (end === "one zero block" || end === "zero block then entry") parts.push(Buffer.alloc(512));
  if (end === "zero block then entry") put({ name: "after", body: "hidden" });
  if (end === "garbage after end") parts.push(Buffer.from("not a header".repeat(50)));
  return { archive: Buffer.concat(parts), headers };
}

const damageArb = fc.oneof(
  fc.record({
    kind: fc.constant("header byte"),
    which: fc.nat(),
    pos: fc.nat(511),
    byte: fc.nat(255),
    fix: fc.boolean(),
  }),
  fc.record({ kind: fc.constant("truncate"), where: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({ kind: fc.constant("zero block"), which: fc.nat() }),
  // In a member's data: a PAX record's length or text, a GNU long name, a sparse map.
  fc.record({
    kind: fc.constant("body byte"),
    which: fc.nat(),
    pos: fc.nat(40),
    byte: fc.constantFrom(0, 0x0a, 0x20, 0x2b, 0x2c, 0x2e, 0x30, 0x31, 0x3d, 0x41, 0xff),
  }),
  fc.record({
    kind: fc.constant("field"),
    which: fc.nat(),
    pos: fc.constantFrom(100, 108, 116, 124, 136, 148, 329, 337, 483),
    text: fc.constantFrom(
      " 644 \0",
      "\0\0  12",
      "12\0 34",
      "0000000000000",
      "\t12",
      "+1",
      "8",
      "",
      "base-256 511",
      "\xff\xff\xff\xff\xff\xff\xff\xfe",
      "\x81",
      "\xc0",
    ),
  }),
);

type Damage = {
  kind: string;
  which?: number;
  pos?: number;
  byte?: number;
  fix?: boolean;
  where?: number;
  text?: string;
};

function damage(b: Built, d: Damage): Buffer {
  const out = Buffer.from(b.archive);
  if (d.kind === "truncate") return out.subarray(0, Math.floor(out.length * (d.where as number)));
  const at = b.headers[(d.which as number) % b.headers.length]!;
  if (d.kind === "zero block")
    return Buffer.concat([out.subarray(0, at), Buffer.alloc(512), out.subarray(at)]);
  if (d.kind === "field") {
    // A numeric field rewritten (padded with NULs to its length), the checksum kept right
    // unless the field is the checksum.
    const len = d.pos! < 124 || d.pos === 148 || (d.pos! >= 329 && d.pos! < 345) ? 8 : 12;
    out.fill(0, at + d.pos!, at + d.pos! + len);
    if (d.text === "base-256 511") {
      // Right-aligned: a small value (a large one would be a sparse file of gigabytes).
      out[at + d.pos!] = 0x80;
      out.writeUInt16BE(511, at + d.pos! + len - 2);
    } else out.write(d.text!.slice(0, len), at + d.pos!, "latin1");
  } else if (d.kind === "body byte") {
    if (at + 512 + d.pos! < out.length) out[at + 512 + d.pos!] = d.byte!;
  } else out[at + (d.pos as number)] = d.byte as number;
  if (d.fix || (d.kind === "field" && d.pos !== 148)) {
    out.fill(0x20, at + 148, at + 156);
    let sum = 0;
    for (let i = at; i < at + 512; i++) sum += out[i]!;
    out.write(`${sum.toString(8).padStart(6, "0")}\0 `, at + 148, 8, "latin1");
  }
  return out;
}

let go: ChildProcessWithoutNullStreams | undefined;
let work: string | undefined;
let skip: string | undefined;
let pending: ((line: string) => void)[] = [];

before(() => {
  try {
    execFileSync("go", ["version"], { stdio: "ignore" });
  } catch {
    skip = "the Go toolchain is not installed (Debian: apt-get install golang-go)";
    return;
  }
  work = mkdtempSync(join(tmpdir(), "slimroot-go-parity-"));
  writeFileSync(join(work, "main.go"), HARNESS);
  const cache = join(cacheRoot(), "go-build");
  mkdirSync(cache, { recursive: true });
  // Standard library only: no module, no network; the build cache is kept between runs.
  execFileSync("go", ["build", "-o", join(work, "tarparity"), "main.go"], {
    cwd: work,
    env: {
      ...process.env,
      GOCACHE: cache,
      GOFLAGS: "",
      GO111MODULE: "off",
      CGO_ENABLED: "0",
      GOPROXY: "off",
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  go = spawn(join(work, "tarparity"));
  let buffered = "";
  go.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
      pending.shift()?.(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
    }
  });
});

after(() => {
  go?.stdin.end();
  go?.kill();
  if (work) rmSync(work, { recursive: true, force: true });
  pending = [];
});

function askGo(archive: Buffer): Promise<string> {
  return new Promise((resolve) => {
    pending.push(resolve);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(archive.length);
    go!.stdin.write(Buffer.concat([len, archive]));
  });
}

/** Runs per property (more to search longer: SLIMROOT_PARITY_RUNS=20000). */
const RUNS = Number(process.env.SLIMROOT_PARITY_RUNS) || 1500;

let tally: Record<string, number> = {};
const count = (what: string) => {
  tally[what] = (tally[what] ?? 0) + 1;
};

/** The property: same entries, or both refuse, or an intended refusal. */
async function agree(archive: Buffer): Promise<void> {
  const theirs = goOutcome(await askGo(archive));
  const ours = await slimrootOutcome(archive);
  const n = ours.entries.length;
  const context = `archive ${archive.toString("base64")}\nGo: ${JSON.stringify(theirs)}\nslimroot: ${JSON.stringify(ours)}`;
  assert.deepEqual(ours.entries, theirs.entries.slice(0, n), `entries differ\n${context}`);
  if (ours.error === undefined) {
    assert.equal(theirs.error, undefined, `Go refuses what slimroot accepts\n${context}`);
    assert.equal(theirs.entries.length, n, context);
    count("both accept, same entries");
    return;
  }
  assert.doesNotMatch(ours.error, /\n/, "one line");
  assert.match(ours.error, /entry |at byte \d+/, `the refusal names the entry or the place\n${context}`);
  if (theirs.error !== undefined && theirs.entries.length === n) return count("both refuse");
  const intended = INTENDED.find((d) => d.refusal.test(ours.error!));
  assert.ok(
    intended && theirs.at!(n).some(intended.go),
    `slimroot refuses what Go accepts, for no listed reason\n${context}`,
  );
  count(`intended: ${intended.refusal.source}`);
}

const archiveArb = fc.tuple(
  fc.array(fc.oneof({ weight: 3, arbitrary: plainArb }, { weight: 1, arbitrary: sparseArb }), {
    maxLength: 4,
  }),
  endArb,
);

test("valid and odd archives: slimroot and Go's archive/tar read the same entries, or both refuse", {
  timeout: 600_000,
}, async (t) => {
  if (skip) return t.skip(skip);
  await fc.assert(
    fc.asyncProperty(archiveArb, async ([specs, end]) => agree(build(specs, end).archive)),
    { numRuns: RUNS, includeErrorInReport: true },
  );
  t.diagnostic(JSON.stringify(tally));
  tally = {};
});

test("damaged archives: slimroot and Go's archive/tar agree, or slimroot refuses for a listed reason", {
  timeout: 600_000,
}, async (t) => {
  if (skip) return t.skip(skip);
  await fc.assert(
    fc.asyncProperty(archiveArb, damageArb, async ([specs, end], d) => {
      const built = build(specs, end);
      if (!built.headers.length) return;
      await agree(damage(built, d));
    }),
    { numRuns: RUNS, includeErrorInReport: true },
  );
  t.diagnostic(JSON.stringify(tally));
  tally = {};
});

test("archives GNU tar writes (gnu, posix, v7, ustar; sparse 0.0, 0.1, 1.0; long names): the same entries", async (t) => {
  if (skip) return t.skip(skip);
  const dir = mkdtempSync(join(tmpdir(), "slimroot-go-parity-gnu-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const script = `
import os, sys
d = sys.argv[1]
os.makedirs(os.path.join(d, "t", "x" * 120), exist_ok=True)
with open(os.path.join(d, "t", "x" * 120, "y" * 90), "wb") as f:
    f.write(b"long")
with open(os.path.join(d, "t", "holes"), "wb") as f:
    for i in range(30):
        f.seek(i * 65536 + 7)
        f.write(b"run%d" % i * 100)
    f.truncate(31 * 65536)
os.symlink("x" * 150, os.path.join(d, "t", "longlink"))
`;
  execFileSync("python3", ["-c", script, dir]);
  const runs: [string, string[]][] = [
    ["gnu", ["--format=gnu", "--sparse"]],
    ["oldgnu", ["--format=oldgnu", "--sparse"]],
    ["posix 0.0", ["--format=posix", "--sparse", "--sparse-version=0.0"]],
    ["posix 0.1", ["--format=posix", "--sparse", "--sparse-version=0.1"]],
    ["posix 1.0", ["--format=posix", "--sparse", "--sparse-version=1.0"]],
    ["ustar", ["--format=ustar", "--exclude=*longlink", "--exclude=xxx*"]],
    ["v7", ["--format=v7", "--exclude=*longlink", "--exclude=xxx*"]],
  ];
  for (const [label, flags] of runs) {
    const tar = execFileSync("tar", ["-C", dir, ...flags, "-cf", "-", "t"], { maxBuffer: 64 << 20 });
    const before = tally["both accept, same entries"] ?? 0;
    await agree(tar);
    assert.equal(tally["both accept, same entries"], before + 1, `${label}: both accept`);
  }
  tally = {};
});
