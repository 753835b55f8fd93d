import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { after, before, test } from "node:test";
import fc from "fast-check";
import { type LayerEntry, tarOf } from "../../test/support/layers.js";
import { applyLayer } from "../tree/flatten.js";
import { addHostPath } from "../tree/host.js";
import { bufferContent, Spool } from "../tree/spool.js";
import { SLIMROOT_LAYER, Tree } from "../tree/tree.js";
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from "./newc.js";
import { cpioParts, type PartOptions, partRecords } from "./parts.js";
import { type CpioEntry, readCpio } from "./reader.js";
import { writeCpio, writeRecords } from "./writer.js";

let spool: Spool;
before(async () => {
  spool = await Spool.create();
});
after(async () => {
  await spool.dispose();
});

/**
 * What Linux 6.1's initramfs unpacker (init/initramfs.c do_name, clean_path, maybe_link) leaves
 * of archives unpacked one after another: a directory over a directory takes the new owner and
 * mode; another type at a name is removed first (a directory only when empty); a file over a
 * file is opened O_TRUNC, so it writes through its hard links; hard links match per archive.
 */
interface Obj {
  kind: number;
  mode: number;
  uid: number;
  gid: number;
  data: string;
}
type Fs = Map<string, Obj>;

function unpack(fs: Fs, entries: CpioEntry[]): void {
  const links = new Map<number, string>();
  const remove = (path: string) => {
    const o = fs.get(path);
    if (!o) return true;
    if (o.kind === S_IFDIR && [...fs.keys()].some((p) => p.startsWith(`${path}/`))) return false;
    fs.delete(path);
    return true;
  };
  const cleanPath = (path: string, kind: number) => {
    const o = fs.get(path);
    if (o && o.kind !== kind) assert.ok(remove(path), `${path}: a directory with entries in the way`);
  };
  for (const e of entries) {
    const kind = e.mode & S_IFMT;
    const meta = { mode: e.mode & 0o7777, uid: e.uid, gid: e.gid };
    const parent = e.name.includes("/") ? e.name.slice(0, e.name.lastIndexOf("/")) : ".";
    if (e.name !== "." && fs.get(parent)?.kind !== S_IFDIR) assert.fail(`${e.name}: no parent directory`);
    if (kind === S_IFDIR) {
      cleanPath(e.name, kind);
      const o = fs.get(e.name) ?? { kind, mode: 0, uid: 0, gid: 0, data: "" };
      fs.set(e.name, Object.assign(o, meta));
    } else if (kind === S_IFLNK) {
      assert.ok(remove(e.name), `${e.name}: a directory with entries in the way`);
      fs.set(e.name, { kind, ...meta, data: e.body.toString("hex") });
    } else if (kind === S_IFREG) {
      cleanPath(e.name, kind);
      const first = e.nlink >= 2 ? links.get(e.ino) : undefined;
      if (e.nlink >= 2 && !first) links.set(e.ino, e.name);
      let o: Obj;
      if (first) {
        remove(e.name);
        o = fs.get(first)!;
        fs.set(e.name, o);
      } else {
        o = fs.get(e.name) ?? { kind, mode: 0, uid: 0, gid: 0, data: "" };
        o.data = ""; // O_TRUNC: through every name of the inode
        fs.set(e.name, o);
      }
      Object.assign(o, meta);
      if (e.body.length) o.data = e.body.toString("hex");
    } else {
      cleanPath(e.name, kind);
      if (!fs.has(e.name)) fs.set(e.name, { kind, ...meta, data: `${e.rdevMajor}:${e.rdevMinor}` });
    }
  }
}

/** The unpacked result: each name's object, and which names share one (hard links). */
function view(fs: Fs) {
  const ids = new Map<Obj, string>();
  const out: Record<string, string> = {};
  for (const [path, o] of [...fs].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!ids.has(o)) ids.set(o, path);
    out[path] = JSON.stringify({ ...o, linkedTo: o.kind === S_IFREG ? ids.get(o) : undefined });
  }
  return out;
}

const read = async (bytes: Buffer) => {
  const out: CpioEntry[] = [];
  for await (const e of readCpio([bytes])) out.push(e);
  return out;
};

async function partBytes(tree: Tree, o: PartOptions = {}) {
  const parts = await cpioParts(tree, o);
  const bytes = [];
  for (const p of parts) bytes.push(await buffer(writeRecords(partRecords(p, { clampMtime: 2 ** 31 }))));
  return { parts, bytes };
}

async function flatten(layers: LayerEntry[][]): Promise<Tree> {
  const tree = new Tree();
  for (const [i, entries] of layers.entries())
    await applyLayer(tree, Readable.from([await tarOf(entries)]), i, `L${i}`, spool);
  return tree;
}

const name = fc.constantFrom("a", "b", "d/a", "d/b", "d/e/a", "e", "d/e");
const layerEntry: fc.Arbitrary<LayerEntry> = fc.oneof(
  fc
    .record({ name, body: fc.constantFrom("1", "22", "333", "") })
    .map((e) => ({ ...e, type: "file" as const })),
  fc
    .record({ name, mode: fc.constantFrom(0o700, 0o755, 0o1777) })
    .map((e) => ({ ...e, type: "directory" as const })),
  fc
    .record({ name, linkname: fc.constantFrom("a", "../x", "d") })
    .map((e) => ({ ...e, type: "symlink" as const })),
  fc.record({ name, linkname: name }).map((e) => ({ ...e, type: "link" as const })),
  name.map((n) => ({ name: n.replace(/[^/]*$/, (b) => `.wh.${b}`), type: "file" as const })),
);

test("an image's layer parts, unpacked one after another as the kernel does, give what its one archive gives", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.array(layerEntry, { maxLength: 8 }), { minLength: 1, maxLength: 3 }),
      async (layers) => {
        let tree: Tree;
        try {
          tree = await flatten(layers);
        } catch {
          return; // a layer the flattener refuses (a hard link to nothing, a write through a symlink)
        }
        const whole = new Map() as Fs;
        unpack(whole, await read(await buffer(writeCpio(tree, { clampMtime: 2 ** 31 }))));
        const joined = new Map() as Fs;
        const { bytes } = await partBytes(tree);
        if (bytes.length === 0) return; // the root alone: nothing to split (a build always has slimroot's part)
        for (const b of bytes) unpack(joined, await read(b));
        assert.deepEqual(view(joined), view(whole));
      },
    ),
    {
      numRuns: 400,
      verbose: 1,
      // A hard link across layers: the kernel links names only within one archive.
      examples: [[[[{ name: "b", body: "1", type: "file" }], [{ name: "a", linkname: "b", type: "link" }]]]],
    },
  );
});

test("a base layer's part is the same bytes whatever the layers above replace, add or update", async () => {
  const base: LayerEntry[] = [
    { name: "etc", type: "directory", mode: 0o755 },
    { name: "etc/passwd", body: "root\n" },
    { name: "etc/hosts", body: "localhost\n" },
    { name: "usr/bin/perl", body: "perl" },
    { name: "usr/bin/perl5", type: "link", linkname: "usr/bin/perl" },
    { name: "usr/lib/libc.so.6", body: "libc" },
    { name: "bin", type: "symlink", linkname: "usr/bin" },
  ];
  const alone = await partBytes(await flatten([base]));
  const uppers: LayerEntry[][] = [
    [{ name: "app/server", body: "app" }],
    [
      { name: "etc", type: "directory", mode: 0o700 },
      { name: "etc/passwd", body: "root\nwww\n" },
      { name: "bin", type: "symlink", linkname: "usr/sbin" },
      { name: "usr/lib/libssl.so.3", body: "ssl" },
    ],
    // A name of a hard-linked lower file replaced: its group cannot be written below it (the
    // kernel would write the new body through the link), but the other names keep theirs.
    [{ name: "usr/bin/perl5", body: "perl 5.38" }],
  ];
  for (const [i, upper] of uppers.entries()) {
    const tree = await flatten([base, upper]);
    const { parts, bytes } = await partBytes(tree);
    assert.deepEqual(
      parts.map((p) => p.name),
      ["layer 0", "layer 1"],
    );
    if (i < 2) assert.ok(bytes[0]!.equals(alone.bytes[0]!), `upper ${i}: the base part differs`);
    const fs = new Map() as Fs;
    for (const b of bytes) unpack(fs, await read(b));
    const whole = new Map() as Fs;
    unpack(whole, await read(await buffer(writeCpio(tree, { clampMtime: 2 ** 31 }))));
    assert.deepEqual(view(fs), view(whole));
  }
});

test("--add over the image's files and directories leaves the image's parts as they were", async () => {
  const base: LayerEntry[] = [
    { name: "etc", type: "directory", mode: 0o755 },
    { name: "etc/motd", body: "debian\n" },
    { name: "srv/www/index.html", body: "image\n" },
  ];
  const alone = await partBytes(await flatten([base]));
  const host = await mkdtemp(join(tmpdir(), "slimroot-parts-"));
  try {
    await mkdir(join(host, "www"), { mode: 0o700 });
    await writeFile(join(host, "www", "index.html"), "added\n");
    await writeFile(join(host, "motd"), "added\n");
    const tree = await flatten([base]);
    const owner = { uid: 1000, gid: 1000 };
    await addHostPath(tree, join(host, "www"), "/srv/www", { owner });
    await addHostPath(tree, join(host, "motd"), "/etc/motd", { owner });
    await addHostPath(tree, host, "/", { owner, shallow: true });
    const { parts, bytes } = await partBytes(tree);
    assert.deepEqual(
      parts.map((p) => p.name),
      ["layer 0", "added"],
    );
    assert.ok(bytes[0]!.equals(alone.bytes[0]!), "the image's part differs");
    const fs = new Map() as Fs;
    for (const b of bytes) unpack(fs, await read(b));
    const whole = new Map() as Fs;
    unpack(whole, await read(await buffer(writeCpio(tree, { clampMtime: 2 ** 31 }))));
    assert.deepEqual(view(fs), view(whole));
    assert.equal(fs.get("srv/www")?.mode, 0o700);
    assert.equal(fs.get(".")?.uid, 1000);
    assert.equal(fs.get("etc/motd")?.data, Buffer.from("added\n").toString("hex"));
  } finally {
    await rm(host, { recursive: true, force: true });
  }
});

test("slimroot's own files are a part of their own, last, holding only them and their directories", async () => {
  const tree = await flatten([[{ name: "etc/hosts", body: "h" }]]);
  const { node } = tree.ensureDir("etc/slimroot", SLIMROOT_LAYER);
  node!.children!.set("app.conf", {
    inode: { kind: "file", mode: 0o644, uid: 0, gid: 0, mtime: 0, content: bufferContent(Buffer.from("x")) },
    layer: SLIMROOT_LAYER,
  });
  const { parts, bytes } = await partBytes(tree);
  assert.deepEqual(
    parts.map((p) => p.name),
    ["layer 0", "slimroot"],
  );
  assert.deepEqual(
    (await read(bytes[1]!)).map((e) => e.name),
    [".", "etc", "etc/slimroot", "etc/slimroot/app.conf"],
  );
  assert.deepEqual(
    (await read(bytes[0]!)).map((e) => e.name),
    [".", "etc", "etc/hosts"],
  );
});

/** A dpkg database as a layer writes it: status with each package's version and conffiles, PKG.list each. */
function dpkgFiles(packages: { key: string; version?: string; paths: string[]; conffiles?: string[] }[]) {
  const status = packages
    .map((p) => {
      const [name, arch] = p.key.split(":");
      const conf = p.conffiles?.length
        ? `Conffiles:\n${p.conffiles.map((c) => ` /${c} 0123`).join("\n")}\n`
        : "";
      return `Package: ${name}\nStatus: install ok installed\nArchitecture: ${arch ?? "all"}\nVersion: ${p.version ?? "1.0-1"}\n${conf}`;
    })
    .join("\n");
  return [
    { name: "var/lib/dpkg/status", body: status },
    ...packages.map((p) => ({
      name: `var/lib/dpkg/info/${p.key}.list`,
      body: `/.\n${p.paths.map((x) => `/${x}\n`).join("")}`,
    })),
  ];
}

const unpackAll = async (bytes: Buffer[]) => {
  const fs = new Map() as Fs;
  for (const b of bytes) unpack(fs, await read(b));
  return view(fs);
};

const wholeView = async (tree: Tree) => {
  const fs = new Map() as Fs;
  unpack(fs, await read(await buffer(writeCpio(tree, { clampMtime: 2 ** 31 }))));
  return view(fs);
};

test("split by package: the parts unpacked one after another give what the one archive gives, whatever each layer's dpkg database says", async () => {
  const pkg = fc.record({
    key: fc.constantFrom("p", "q", "r:amd64"),
    paths: fc.array(name, { maxLength: 4 }),
    conffiles: fc.array(name, { maxLength: 1 }),
  });
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.record({
          entries: fc.array(layerEntry, { maxLength: 8 }),
          dpkg: fc.option(fc.array(pkg, { maxLength: 3 })),
        }),
        { minLength: 1, maxLength: 3 },
      ),
      async (layers) => {
        let tree: Tree;
        try {
          tree = await flatten(layers.map((l) => [...l.entries, ...(l.dpkg ? dpkgFiles(l.dpkg) : [])]));
        } catch {
          return; // a layer the flattener refuses
        }
        const { parts, bytes } = await partBytes(tree, { minPackageBytes: 0 });
        if (bytes.length === 0) return;
        assert.deepEqual(await unpackAll(bytes), await wholeView(tree));
        // Each package part holds files of its package only, and no name twice in one layer.
        const written = new Set<string>();
        for (const [i, p] of parts.entries())
          for (const e of await read(bytes[i]!)) {
            if ((e.mode & S_IFMT) === S_IFDIR) continue;
            assert.ok(!written.has(`${p.layer} ${e.name}`), `${e.name} twice in layer ${p.layer}`);
            written.add(`${p.layer} ${e.name}`);
          }
      },
    ),
    {
      numRuns: 300,
      verbose: 1,
      examples: [
        // A conffile and a library of p in layer 0, both replaced by layer 1 (an upgrade and an edit).
        [
          [
            {
              entries: [
                { name: "e", body: "conf" },
                { name: "d/a", body: "lib 1" },
              ],
              dpkg: [{ key: "p", paths: ["e", "d/a"], conffiles: ["e"] }],
            },
            {
              entries: [
                { name: "e", body: "edited" },
                { name: "d/a", body: "lib 2" },
              ],
              dpkg: [{ key: "p", paths: ["d/a"], conffiles: ["e"] }],
            },
          ],
        ],
        // A hard-link group whose names two packages list.
        [
          [
            {
              entries: [
                { name: "a", body: "1" },
                { name: "b", linkname: "a", type: "link" },
              ],
              dpkg: [
                { key: "p", paths: ["a"], conffiles: [] },
                { key: "q", paths: ["b"], conffiles: [] },
              ],
            },
          ],
        ],
      ],
    },
  );
});

test("split by package: a package's part is the same bytes in any image that installed it, whatever else the image or its layer holds", async () => {
  const base: LayerEntry[] = [
    { name: "usr", type: "directory", mode: 0o755 },
    { name: "usr/lib", type: "directory", mode: 0o755 },
    { name: "lib", type: "symlink", linkname: "usr/lib" },
    { name: "usr/lib/libc.so.6", body: "libc" },
    ...dpkgFiles([{ key: "libc6:amd64", version: "2.36", paths: ["lib", "lib/libc.so.6"] }]),
  ];
  const libfoo = [
    { name: "usr/lib/libfoo.so.1.2", body: "foo".repeat(100) },
    { name: "usr/lib/libfoo.so.1", type: "symlink" as const, linkname: "libfoo.so.1.2" },
    { name: "usr/share/foo/data", body: "data" },
    { name: "etc/foo.conf", body: "conf" },
  ];
  const fooPkg = {
    key: "libfoo1:amd64",
    version: "1.2-3",
    paths: ["usr", "usr/lib", "lib/libfoo.so.1.2", "lib/libfoo.so.1", "usr/share/foo/data", "etc/foo.conf"],
    conffiles: ["etc/foo.conf"],
  };
  const partOf = async (layer1: LayerEntry[], key: string) => {
    const { parts, bytes } = await partBytes(await flatten([base, layer1]), { minPackageBytes: 0 });
    const i = parts.findIndex((p) => p.package?.key === key);
    assert.ok(i >= 0, `no part of ${key}: ${parts.map((p) => p.name).join(", ")}`);
    return { part: parts[i]!, bytes: bytes[i]! };
  };
  const alone = await partOf([...libfoo, ...dpkgFiles([fooPkg])], "libfoo1:amd64");
  assert.equal(alone.part.name, "layer 1 libfoo1:amd64");
  assert.deepEqual(alone.part.package, { key: "libfoo1:amd64", version: "1.2-3" });
  // Listed as /lib/..., found under usr/lib through the base's symlink; the conffile is not in.
  assert.deepEqual(
    (await read(alone.bytes)).map((e) => e.name),
    [
      ".",
      "usr",
      "usr/lib",
      "usr/lib/libfoo.so.1",
      "usr/lib/libfoo.so.1.2",
      "usr/share",
      "usr/share/foo",
      "usr/share/foo/data",
    ],
  );
  const other = fc.record({
    files: fc.array(
      fc.constantFrom("usr/lib/libbar.so", "usr/share/bar", "app/x", "etc/foo.conf", "usr/zz"),
      {
        maxLength: 4,
      },
    ),
    dirMode: fc.constantFrom(0o700, 0o755, 0o775),
    bar: fc.boolean(),
  });
  await fc.assert(
    fc.asyncProperty(other, async ({ files, dirMode, bar }) => {
      const extra: LayerEntry[] = [
        { name: "usr/lib", type: "directory", mode: dirMode, uid: 7 },
        ...[...new Set(files)].map((f) => ({ name: f, body: `other ${f}` })),
      ];
      const pkgs = bar
        ? [fooPkg, { key: "libbar", paths: files.filter((f) => f.startsWith("usr/")) }]
        : [fooPkg];
      // The package's files in another order, among the image's own, with other packages beside it.
      const got = await partOf(
        [...extra.slice(0, 1), ...libfoo.slice().reverse(), ...extra.slice(1), ...dpkgFiles(pkgs)],
        "libfoo1:amd64",
      );
      assert.ok(got.bytes.equals(alone.bytes), "libfoo1's part differs");
    }),
    { numRuns: 60 },
  );
});

test("split by package: none without a dpkg database, none under the threshold, none for --add's and slimroot's files", async () => {
  const layers: LayerEntry[][] = [
    [
      { name: "usr/lib/big", body: "x".repeat(2000) },
      { name: "usr/lib/small", body: "y" },
    ],
    [{ name: "app/z", body: "z" }],
  ];
  const plain = await flatten(layers);
  const unsplit = await partBytes(plain, { byPackage: false });
  const none = await partBytes(plain, { minPackageBytes: 0 });
  assert.deepEqual(
    none.parts.map((p) => p.name),
    ["layer 0", "layer 1"],
  );
  assert.deepEqual(none.bytes, unsplit.bytes);
  const db = dpkgFiles([
    { key: "big", paths: ["usr/lib/big"] },
    { key: "small", paths: ["usr/lib/small"] },
  ]);
  const tree = await flatten([[...layers[0]!, ...db], layers[1]!]);
  const { parts } = await partBytes(tree, { minPackageBytes: 2000 });
  assert.deepEqual(
    parts.map((p) => p.name),
    ["layer 0 big", "layer 0", "layer 1"],
  );
});

test("split by package: each layer's parts are named by the database that layer saw (an upgrade above gives a part of each version)", async () => {
  const tree = await flatten([
    [
      { name: "usr/lib/libp.so", body: "p1" },
      ...dpkgFiles([{ key: "p", version: "1.0", paths: ["usr/lib/libp.so"] }]),
    ],
    [
      { name: "usr/lib/libp.so", body: "p2" },
      ...dpkgFiles([{ key: "p", version: "2.0", paths: ["usr/lib/libp.so"] }]),
    ],
  ]);
  const { parts, bytes } = await partBytes(tree, { minPackageBytes: 0 });
  assert.deepEqual(
    parts.map((p) => [p.name, p.package?.version]),
    [
      ["layer 0 p", "1.0"],
      ["layer 0", undefined],
      ["layer 1 p", "2.0"],
      ["layer 1", undefined],
    ],
  );
  const body = async (i: number) =>
    (await read(bytes[i]!)).find((e) => e.name === "usr/lib/libp.so")?.body.toString();
  assert.deepEqual([await body(0), await body(2)], ["p1", "p2"]);
  assert.deepEqual(await unpackAll(bytes), await wholeView(tree));
});
