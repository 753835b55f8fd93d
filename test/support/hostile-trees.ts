/**
 * The hostile matrix's rows: each a tree described once, as data, from which both its tar
 * source (test/support/raw-tar.ts) and the snapshot a faithful writer must produce are made.
 */
import { createHash } from "node:crypto";
import { displayName, nameFromBytes } from "../../src/tree/path.js";
import { paxMember, type RawMember } from "./raw-tar.js";

/** One entry as every reader reports it (test/support/readback.ts). */
export interface Entry {
  type: "file" | "dir" | "symlink" | "char" | "block" | "fifo" | "socket";
  /** Permission bits, octal. */
  mode: string;
  owner: string;
  sha256?: string;
  /** A symlink's target, hex (targets are bytes too). */
  target?: string;
  rdev?: string;
  /** name (surrogateescape string, src/tree/path.ts) -> value hex; absent when none. */
  xattrs?: Record<string, string>;
}

/** Image path (surrogateescape string) -> entry. */
export type Snapshot = Map<string, Entry>;

interface TreeEntry {
  path: string | Buffer;
  kind: "file" | "dir" | "symlink" | "char" | "block";
  mode?: number;
  uid?: number;
  gid?: number;
  body?: string | Buffer;
  target?: string | Buffer;
  dev?: [number, number];
  xattrs?: [string | Buffer, string | Buffer][];
}

/** What a writer (a column) can hold, for the rows to decide what they must do in it. */
export interface Capacity {
  /** The format keeps extended attributes. */
  xattrs: boolean;
  /** The format is a gen_init_cpio list: whitespace in a name cannot be written raw. */
  list: boolean;
  /** The longest name its tool writes, when under NAME_MAX (mkfs.erofs 1.5: 254 bytes). */
  maxNameBytes?: number;
}

export interface HostileRow {
  name: string;
  /** The tar source's members. */
  tar: () => RawMember[];
  /** The tree a byte-exact writer holds (before any column drops xattrs). */
  expected: Snapshot;
  /** Whether a refusal's one line names the offending entry. */
  names: (line: string) => boolean;
  /** What `names` looks for, for the failure message. */
  offenders: string;
  /** Why this column must refuse the row (no format or kernel can hold it), if it must. */
  mustRefuse?: (c: Capacity) => string | undefined;
  /** Why this column must build the row (the format holds it: refusing is a lost image), if it must. */
  mustAccept?: (c: Capacity) => string | undefined;
  /** Runs against every writer, but only the tricks marked for every row (slow or huge rows). */
  writersOnly?: boolean;
}

const buf = (v: string | Buffer) => (typeof v === "string" ? Buffer.from(v) : v);
const hex = (v: string | Buffer) => buf(v).toString("hex");
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const TYPEFLAG = { file: "0", dir: "5", symlink: "2", char: "3", block: "4" } as const;

/** Base-256 (GNU) for numbers the octal field cannot hold. */
function numberEdit(at: number, len: number, v: number): (b: Buffer) => void {
  return (b) => {
    if (v < 8 ** (len - 1)) b.write(`${v.toString(8).padStart(len - 1, "0")}\0`, at, len, "latin1");
    else {
      b.fill(0, at, at + len);
      b.writeUIntBE(v, at + len - 6, 6);
      b[at] = 0x80;
    }
  };
}

/** The tar members of a tree: PAX records for long names and xattrs, raw bytes otherwise. */
export function tarMembers(entries: TreeEntry[]): RawMember[] {
  const out: RawMember[] = [];
  for (const e of entries) {
    const name = Buffer.concat([buf(e.path), Buffer.from(e.kind === "dir" ? "/" : "")]);
    const target = e.target === undefined ? undefined : buf(e.target);
    const records: [string, string | Buffer][] = [];
    if (name.length > 100) records.push(["path", name]);
    if (target && target.length > 100) records.push(["linkpath", target]);
    for (const [k, v] of e.xattrs ?? []) {
      const key = buf(k);
      // A name holding "=" or a newline cannot be a SCHILY key: libarchive's form escapes it.
      if (key.includes(0x3d) || key.includes(0x0a) || key.some((c) => c >= 0x80))
        records.push([
          `LIBARCHIVE.xattr.${[...key].map((c) => `%${c.toString(16).padStart(2, "0")}`).join("")}`,
          buf(v).toString("base64"),
        ]);
      else records.push([`SCHILY.xattr.${key.toString()}`, buf(v)]);
    }
    if (records.length) out.push(paxMember(records));
    const edits: ((b: Buffer) => void)[] = [];
    if (e.dev) edits.push(numberEdit(329, 8, e.dev[0]), numberEdit(337, 8, e.dev[1]));
    out.push({
      name: name.subarray(0, 100),
      type: TYPEFLAG[e.kind],
      mode: e.mode ?? (e.kind === "dir" ? 0o755 : e.kind === "symlink" ? 0o777 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      ...(e.body !== undefined ? { body: e.body } : {}),
      ...(target ? { linkname: target.subarray(0, 100) } : {}),
      edit: (b) => {
        for (const f of edits) f(b);
      },
    });
  }
  return out;
}

/** The snapshot a byte-exact writer gives back for `entries`. */
export function expectedSnapshot(entries: TreeEntry[]): Snapshot {
  const out: Snapshot = new Map();
  for (const e of entries) {
    const mode = e.mode ?? (e.kind === "dir" ? 0o755 : e.kind === "symlink" ? 0o777 : 0o644);
    const s: Entry = { type: e.kind, mode: mode.toString(8), owner: `${e.uid ?? 0}:${e.gid ?? 0}` };
    if (e.kind === "file") s.sha256 = sha(buf(e.body ?? ""));
    if (e.kind === "symlink") s.target = hex(e.target ?? "");
    if (e.dev) s.rdev = `${e.dev[0]},${e.dev[1]}`;
    if (e.xattrs?.length)
      s.xattrs = Object.fromEntries(e.xattrs.map(([k, v]) => [nameFromBytes(buf(k)), hex(v)]));
    out.set(nameFromBytes(buf(e.path)), s);
  }
  return out;
}

/** A row from a tree: the offending names are what a refusal must name (any one of them). */
function treeRow(
  name: string,
  entries: TreeEntry[],
  offending: (string | Buffer)[],
  rules: Pick<HostileRow, "mustRefuse" | "mustAccept"> = {},
): HostileRow {
  const shown = offending.map((p) => displayed(nameFromBytes(buf(p))));
  return {
    name,
    tar: () => tarMembers(entries),
    expected: expectedSnapshot(entries),
    names: (line) => shown.some((forms) => forms.some((f) => line.includes(f))),
    offenders: shown
      .map(([f]) => (f!.length > 40 ? `${f!.slice(0, 12)}... (${f!.length} characters)` : f))
      .join(", "),
    ...rules,
  };
}

/**
 * The printable forms a message may name a path by: src/tree/path.ts displayName's, and the
 * same without its quotes (a message may quote the whole "entry /path" itself).
 */
function displayed(p: string): string[] {
  const d = displayName(p);
  return d.startsWith('"') && d.endsWith('"') ? [d, d.slice(1, -1)] : [d];
}

const lat = (s: string) => Buffer.from(s, "latin1");
const cat = (...parts: (string | Buffer)[]) => Buffer.concat(parts.map(buf));
/** A file capability: cap_net_bind_service, effective (VFS_CAP_REVISION_2). */
export const CAPABILITY = Buffer.from("0100000200040000000000000000000000000000", "hex");
const inAll = (why: string) => () => why;
const HOLDS_BYTES = inAll("every format stores names as bytes: refusing loses the image");

/** "${" spelled so that it reads as the two bytes it is, not a forgotten template. */
const VAR = (name: string) => `\x24{${name}}`;
/** `.${Q}.` twelve times: with Q unset, a list location that gen_init_cpio expands climbs to /. */
const DOLLAR_DIRS = Array.from({ length: 12 }, (_, i) =>
  Array(i + 1)
    .fill(`.${VAR("Q")}.`)
    .join("/"),
);

export const HOSTILE_ROWS: HostileRow[] = [
  treeRow(
    "non-UTF-8 names",
    [
      { path: lat("d\xff"), kind: "dir" },
      { path: lat("caf\xe8"), kind: "file", body: "e8\n" },
      { path: lat("caf\xe9"), kind: "file", body: "e9\n", mode: 0o600, uid: 1000 },
      { path: lat("d\xff/f"), kind: "file", body: "in d\\xff\n" },
      { path: "l", kind: "symlink", target: lat("caf\xe8") },
    ],
    [lat("caf\xe8"), lat("caf\xe9"), lat("d\xff")],
    { mustAccept: HOLDS_BYTES },
  ),
  treeRow(
    "newline in names",
    [
      { path: "a\nb", kind: "file", body: "newline\n" },
      { path: "d\nx", kind: "dir" },
      { path: "d\nx/f", kind: "file", body: "f\n" },
      { path: "s", kind: "symlink", target: "a\nb" },
    ],
    ["a\nb", "d\nx"],
    { mustAccept: (c) => (c.list ? undefined : "a newline is a byte like any other in this format") },
  ),
  treeRow(
    "tab and space in names",
    [
      { path: "a\tb", kind: "file", body: "tab\n" },
      { path: "c d", kind: "file", body: "space\n" },
    ],
    ["a\tb", "c d"],
    { mustAccept: (c) => (c.list ? undefined : "whitespace is a byte like any other in this format") },
  ),
  treeRow(
    "${ in names",
    [
      ...DOLLAR_DIRS.map((path) => ({ path, kind: "dir" as const })),
      { path: `${DOLLAR_DIRS.at(-1)}/etc`, kind: "dir" },
      { path: `${DOLLAR_DIRS.at(-1)}/etc/hostname`, kind: "file", body: "the image's, not the host's\n" },
      { path: VAR("HOME"), kind: "file", body: "home\n" },
    ],
    [`.${VAR("Q")}.`, VAR("HOME")],
    { mustAccept: (c) => (c.list ? undefined : "only a list location is expanded") },
  ),
  treeRow(
    "= in names",
    [
      { path: "a=b", kind: "file", body: "eq\n" },
      { path: "k=v", kind: "dir" },
      { path: "k=v/x=y", kind: "file", body: "eq\n" },
    ],
    ["a=b", "k=v"],
    { mustAccept: inAll("'=' is a byte like any other in a name") },
  ),
  treeRow(
    "255-byte names",
    [
      { path: "n".repeat(255), kind: "file", body: "255\n" },
      // 127 two-byte characters and one byte: 255 bytes, 128 characters.
      { path: `${"é".repeat(127)}x`, kind: "dir" },
      { path: `${"é".repeat(127)}x/f`, kind: "file", body: "in\n" },
    ],
    ["n".repeat(255), `${"é".repeat(127)}x`],
    {
      mustAccept: (c) =>
        c.maxNameBytes === undefined ? "NAME_MAX is 255 bytes: the format holds it" : undefined,
      mustRefuse: (c) =>
        c.maxNameBytes !== undefined
          ? `the format's tool writes names of at most ${c.maxNameBytes} bytes`
          : undefined,
    },
  ),
  treeRow("256-byte name", [{ path: "n".repeat(256), kind: "file", body: "256\n" }], ["n".repeat(256)], {
    mustRefuse: inAll("NAME_MAX is 255: neither a directory entry nor the kernel's unpacker can create it"),
  }),
  {
    name: "3000-deep path",
    tar: () => tarMembers([{ path: `${"d/".repeat(3000)}f`, kind: "file", body: "deep\n" }]),
    expected: new Map(),
    // The refusal names a path of d/d/...: at least 16 levels of it.
    names: (line) => line.includes("d/".repeat(16)),
    offenders: "d/d/... (16 levels or more)",
    mustRefuse: inAll(
      "a 6001-byte path is over PATH_MAX: the kernel's unpacker cannot create it and no tool can read it back",
    ),
    writersOnly: true,
  },
  {
    name: "1 TiB sparse file",
    // GNU sparse 1.0 (PAX): a 4-byte segment at the end of a 1 TiB file, in a 2 KiB tar.
    tar: () => {
      const size = 2 ** 40;
      const map = Buffer.from(`1\n${size - 4}\n4\n`);
      const body = Buffer.concat([map, Buffer.alloc(512 - map.length), Buffer.from("tail")]);
      return [
        paxMember([
          ["GNU.sparse.major", "1"],
          ["GNU.sparse.minor", "0"],
          ["GNU.sparse.name", "bomb"],
          ["GNU.sparse.realsize", String(size)],
        ]),
        { name: "GNUSparseFile.0/bomb", body },
      ];
    },
    expected: new Map(),
    names: (line) => line.includes("bomb"),
    offenders: "bomb",
    mustRefuse: inAll("1 TiB is over any budget: expanding it fills the disk"),
    writersOnly: true,
  },
  treeRow(
    "device numbers out of range",
    [
      { path: "dev", kind: "dir" },
      { path: "dev/big-major", kind: "char", dev: [4096, 1], mode: 0o600 },
      { path: "dev/big-minor", kind: "block", dev: [1, 1 << 20], mode: 0o600 },
    ],
    ["dev/big-major", "dev/big-minor"],
    {
      mustRefuse: inAll(
        "Linux's dev_t holds a 12-bit major and a 20-bit minor: the kernel would make another device",
      ),
    },
  ),
  ...xattrRows(),
  dpkgRow(),
];

/**
 * A dpkg database that lies (build --layers splits a layer by the packages it lists, cpio/parts.ts):
 * paths that climb above the root, through an absolute and a relative symlink, one file two
 * packages claim, a package status lists twice, a conffile, blank lines. Every format holds the
 * tree as it is; the layered column's parts, joined, must still be exactly this tree.
 */
function dpkgRow(): HostileRow {
  const big = "x".repeat(1100 * 1024);
  const dirs = ["etc", "usr", "usr/lib", "var", "var/lib", "var/lib/dpkg", "var/lib/dpkg/info"];
  return treeRow(
    "a lying dpkg database",
    [
      ...dirs.map((path) => ({ path, kind: "dir" as const })),
      { path: "lib", kind: "symlink", target: "usr/lib" },
      { path: "escape", kind: "symlink", target: "/" },
      { path: "up", kind: "symlink", target: "../../.." },
      { path: "usr/lib/big.so", kind: "file", body: big },
      { path: "usr/lib/claimed.so", kind: "file", body: `${big}2` },
      { path: "usr/lib/big-link", kind: "symlink", target: "big.so" },
      { path: "etc/big.conf", kind: "file", body: "conf\n" },
      {
        path: "var/lib/dpkg/status",
        kind: "file",
        body: "Package: big\nArchitecture: amd64\nVersion: 1:1.0\nConffiles:\n /etc/big.conf 0123 obsolete\n\nPackage: evil\nVersion: 9\n\nPackage: dup\nVersion: 1\n\nPackage: dup\nVersion: 2\n\n\n",
      },
      {
        path: "var/lib/dpkg/info/big:amd64.list",
        kind: "file",
        body: "/.\n/usr\n/lib/big.so\n/lib/big-link\n/usr/lib/claimed.so\n/etc/big.conf\n\n",
      },
      {
        path: "var/lib/dpkg/info/evil.list",
        kind: "file",
        body: "/../../../etc/hostname\n/escape/usr/lib/../lib/claimed.so\n/up/etc/passwd\n/nonexistent/x\n/lib/big.so/x\n",
      },
      { path: "var/lib/dpkg/info/dup.list", kind: "file", body: "/usr/lib/big.so\n" },
    ],
    ["var/lib/dpkg/status"],
    { mustAccept: inAll("a package database is data like any other file: refusing loses the image") },
  );
}

/** One row per xattr shape: the xattr on one file, and a neighbour that must stay without. */
function xattrRows(): HostileRow[] {
  const row = (
    name: string,
    xattr: [string | Buffer, string | Buffer],
    rules: Pick<HostileRow, "mustRefuse" | "mustAccept"> = {},
  ) =>
    treeRow(
      `xattr ${name}`,
      [
        { path: "xattr-holder", kind: "file", body: "f\n", mode: 0o755, xattrs: [xattr] },
        { path: "no-xattrs", kind: "file", body: "g\n" },
      ],
      ["xattr-holder"],
      rules,
    );
  const refusedWhereKept = (why: string) => ({ mustRefuse: (c: Capacity) => (c.xattrs ? why : undefined) });
  return [
    row("name with a newline", [cat("user.a\nsecurity.capability"), "v"]),
    row("name with =", ["user.a=b", "v"]),
    row(
      "name over 255 bytes",
      [`user.${"x".repeat(251)}`, "v"],
      refusedWhereKept("XATTR_NAME_MAX is 255: the kernel cannot set it"),
    ),
    row(
      "value over 64 KiB",
      ["user.big", Buffer.alloc(65537, 0x61)],
      refusedWhereKept("XATTR_SIZE_MAX is 64 KiB: the kernel cannot set it"),
    ),
    row(
      "in an unknown namespace",
      ["foo.bar", "v"],
      refusedWhereKept("the kernel takes only the security., system., trusted. and user. namespaces"),
    ),
    row("security.capability", ["security.capability", CAPABILITY], {
      mustAccept: (c) => (c.xattrs ? "the format holds file capabilities" : undefined),
    }),
  ];
}
