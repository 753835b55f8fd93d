// Fuzzing the layer reader, the flattener and the cpio writer/reader with generated hostile
// layers. Each property runs a fixed number of inputs (logged as a diagnostic and counted in
// README "Hostile input"); a property that finds a counterexample prints it and fails.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { after, before, test } from "node:test";
import fc from "fast-check";
import { readCpio } from "../src/cpio/reader.js";
import { writeCpio } from "../src/cpio/writer.js";
import { build } from "../src/pipeline/build.js";
import { applyLayer } from "../src/tree/flatten.js";
import { nameBytes } from "../src/tree/path.js";
import { Spool } from "../src/tree/spool.js";
import { Tree } from "../src/tree/tree.js";
import { Budget } from "../src/util/budget.js";
import { UserError } from "../src/util/errors.js";
import { writeOciLayout } from "./support/layers.js";
import { paxMember, type RawMember, rawTar } from "./support/raw-tar.js";

let spool: Spool;
let work: string;
before(async () => {
  spool = await Spool.create();
  work = await mkdtemp(join(tmpdir(), "slimroot-fuzz-"));
});
after(async () => {
  await spool.dispose();
  await rm(work, { recursive: true, force: true });
});

// Name pieces chosen to hit the edges: climbing, empty and dot segments, whiteouts (good and
// malformed), NUL, non-UTF-8 bytes, an encoded surrogate, long names.
const segment = fc.oneof(
  { weight: 40, arbitrary: fc.constantFrom("a", "b", "etc", "bin", "x y", "é") },
  fc.constantFrom("..", ".", "", ".wh.a", ".wh..wh..opq", ".wh..", ".wh.", ".wh...", ".wh..wh.plnk"),
  fc.constantFrom("a\0b", "\0", "\xff", "caf\xe9", "\xed\xb2\x80", "x".repeat(120)),
);
const rawName = fc
  .tuple(
    fc.oneof({ weight: 12, arbitrary: fc.constant("") }, fc.constantFrom("/", "./", "../")),
    fc.array(segment, { minLength: 1, maxLength: 4 }),
  )
  .map(([lead, segs]) => Buffer.from(lead + segs.join("/"), "latin1"));
const typeflag = fc.oneof(
  { weight: 60, arbitrary: fc.constantFrom("0", "0", "5", "2", "1") },
  fc.constantFrom("3", "4", "6", "7", "\0", "S", "V", "Z", "M", "D", "K", "L", "g", "x"),
);
const paxValue = fc.oneof(
  fc.constantFrom("0", "3000000", "4294967294", "4294967295", "-1", "1e3", "", "99999999999999999999"),
  fc.constantFrom("1.5", "abc", "0,1,2", "a\0b", "/etc/passwd", "../../x"),
  rawName.map((b) => b.toString("latin1")),
  rawName.map((b) => `${b.toString("latin1")}\0${b.toString("latin1")}`),
);
const paxKey = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom("path", "linkpath") },
  fc.constantFrom(
    "uid",
    "gid",
    "size",
    "mtime",
    "uname",
    "SCHILY.xattr.security.capability",
    "SCHILY.xattr.",
    "GNU.sparse.map",
    "GNU.sparse.size",
    "GNU.sparse.major",
    "GNU.sparse.name",
  ),
);
const member: fc.Arbitrary<RawMember[]> = fc
  .record({
    name: rawName,
    type: typeflag,
    body: fc.uint8Array({ maxLength: 40 }),
    linkname: rawName,
    mode: fc.constantFrom(0o644, 0o755, 0o4755, 0o7777),
    uid: fc.constantFrom(0, 1000, 0o7777777),
    pax: fc.oneof(
      { weight: 3, arbitrary: fc.constant([] as [string, Buffer][]) },
      fc.array(
        fc.tuple(
          paxKey,
          paxValue.map((v) => Buffer.from(v, "latin1")),
        ),
        { minLength: 1, maxLength: 3 },
      ),
    ),
  })
  .map(({ pax, body, ...m }) => {
    const own: RawMember = { ...m, body: Buffer.from(body) };
    return pax.length ? [paxMember(pax), own] : [own];
  });
/** A layer: hand-made members, sometimes with bytes flipped or cut off. */
const layer = fc
  .tuple(
    fc.array(member, { maxLength: 6 }),
    fc.oneof(
      { weight: 6, arbitrary: fc.constant(null) },
      fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })),
    ),
    fc.oneof({ weight: 6, arbitrary: fc.constant(null) }, fc.nat()),
  )
  .map(([members, flip, cut]) => {
    let tar = rawTar(members.flat());
    if (flip) {
      tar = Buffer.from(tar);
      tar[flip[0] % tar.length] = flip[1];
    }
    if (cut !== null) tar = tar.subarray(0, cut % (tar.length + 1));
    return tar;
  });

async function flattenLayers(layers: Buffer[]): Promise<Tree | UserError> {
  const tree = new Tree(new Budget(undefined, { maxFileSize: { bytes: 0xffffffff, format: "newc cpio" } }));
  for (const [i, tar] of layers.entries()) {
    try {
      await applyLayer(tree, Readable.from([tar]), i, `L${i}`, spool);
    } catch (err) {
      // Anything but a one-line UserError naming the layer is a bug (a crash, a raw message).
      assert.ok(err instanceof UserError, `not a UserError: ${(err as Error).stack}`);
      assert.match(err.message, new RegExp(`^layer L${i}: `));
      assert.doesNotMatch(err.message, /\n/);
      return err;
    }
  }
  return tree;
}

/** A cpio name must not leave the root, hold a NUL or have empty or dot segments. */
function assertSafeName(name: string) {
  assert.ok(!name.includes("\0"), `NUL in ${JSON.stringify(name)}`);
  if (name === ".") return;
  for (const seg of name.split("/")) {
    assert.ok(seg !== "" && seg !== "." && seg !== "..", `bad segment in ${JSON.stringify(name)}`);
  }
}

const RUNS = { layers: 1500, distinct: 500, model: 500, mutate: 1000, build: 40 };

test(`hostile layers: a one-line error, or a cpio whose names stay inside and distinct (${RUNS.layers} inputs)`, async (t) => {
  let refused = 0;
  let entries = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(layer, { minLength: 1, maxLength: 3 }), async (layers) => {
      const tree = await flattenLayers(layers);
      if (tree instanceof UserError) {
        refused++;
        return;
      }
      const want = [...tree.walk()].map((e) => (e.path === "" ? "." : e.path));
      const got: string[] = [];
      for await (const e of readCpio(writeCpio(tree, { clampMtime: 2 ** 31 }))) {
        assertSafeName(e.name);
        got.push(e.name);
        entries++;
      }
      assert.deepEqual(got, want);
      assert.equal(new Set(got.map((n) => nameBytes(n).toString("hex"))).size, got.length);
    }),
    { numRuns: RUNS.layers, interruptAfterTimeLimit: 20_000 },
  );
  t.diagnostic(`${refused} of ${RUNS.layers} refused; the others gave ${entries} cpio entries`);
  assert.ok(refused > 0 && refused < RUNS.layers, `${refused} refused: the generator covers both outcomes`);
});

test(`distinct byte names stay distinct from tar to cpio (${RUNS.distinct} inputs)`, async () => {
  const byteName = fc
    .uint8Array({ minLength: 1, maxLength: 12 })
    .map((a) => Buffer.from(a.map((b) => (b === 0 || b === 0x2f ? 0x5f : b))))
    .filter((b) => !b.toString("latin1").startsWith(".wh.") && b.toString() !== "." && b.toString() !== "..");
  await fc.assert(
    fc.asyncProperty(
      fc.uniqueArray(byteName, { maxLength: 12, selector: (b) => b.toString("hex") }),
      async (names) => {
        const tree = await flattenLayers([rawTar(names.map((name, i) => ({ name, body: String(i) })))]);
        assert.ok(tree instanceof Tree, String(tree));
        const out = new Map<string, string>();
        for await (const e of readCpio(writeCpio(tree, { clampMtime: 0 }))) {
          if (e.name !== ".") out.set(nameBytes(e.name).toString("hex"), e.body.toString());
        }
        assert.deepEqual([...out.keys()].sort(), names.map((n) => n.toString("hex")).sort());
        for (const [i, n] of names.entries()) assert.equal(out.get(n.toString("hex")), String(i));
      },
    ),
    { numRuns: RUNS.distinct, interruptAfterTimeLimit: 20_000 },
  );
});

type Op =
  | { kind: "file"; path: string; body: string }
  | { kind: "dir"; path: string }
  | { kind: "link"; path: string; target: string }
  | { kind: "wh"; path: string }
  | { kind: "opq"; path: string };

interface ModelNode {
  kind: "file" | "dir";
  body?: string;
  /** Same id = same inode (hard links). */
  id: number;
  layer: number;
}

/** Layer application as plainly as it can be said, over a map of paths. */
function model(layers: Op[][]): Map<string, ModelNode> | "error" {
  const tree = new Map<string, ModelNode>();
  let ids = 0;
  const drop = (p: string) => {
    tree.delete(p);
    for (const k of [...tree.keys()]) if (k.startsWith(`${p}/`)) tree.delete(k);
  };
  for (const [layer, ops] of layers.entries()) {
    for (const op of ops) {
      const parts = op.path.split("/");
      for (let i = 1; i < parts.length; i++) {
        const parent = parts.slice(0, i).join("/");
        const have = tree.get(parent);
        if (have && have.kind !== "dir") return "error";
        if (!have) tree.set(parent, { kind: "dir", id: ids++, layer });
      }
      if (op.kind === "wh") drop(op.path);
      else if (op.kind === "opq") {
        const dir = parts.slice(0, -1).join("/");
        for (const [k, v] of [...tree]) {
          const rest = k.slice(dir.length + 1);
          if (k.startsWith(`${dir}/`) && !rest.includes("/") && v.layer < layer) drop(k);
        }
      } else if (op.kind === "dir") {
        const have = tree.get(op.path);
        if (have?.kind === "dir") have.layer = layer;
        else {
          drop(op.path);
          tree.set(op.path, { kind: "dir", id: ids++, layer });
        }
      } else if (op.kind === "link") {
        const target = tree.get(op.target);
        if (target?.kind !== "file") return "error";
        if (op.target === op.path) continue;
        drop(op.path);
        tree.set(op.path, { ...target, layer });
      } else {
        drop(op.path);
        tree.set(op.path, { kind: "file", body: op.body, id: ids++, layer });
      }
    }
  }
  return tree;
}

/** path -> "<dir>" or body plus the first path of its inode (so hard links must agree). */
function describeModel(tree: Map<string, ModelNode>) {
  const first = new Map<number, string>();
  for (const p of [...tree.keys()].sort()) if (!first.has(tree.get(p)!.id)) first.set(tree.get(p)!.id, p);
  return Object.fromEntries(
    [...tree].map(([p, n]) => [p, n.kind === "dir" ? "<dir>" : `${n.body} @${first.get(n.id)}`]),
  );
}

async function describeTree(tree: Tree) {
  const first = new Map<object, string>();
  const out: Record<string, string> = {};
  const paths = [...tree.walk()].filter((e) => e.path !== "").sort((a, b) => (a.path < b.path ? -1 : 1));
  for (const { path, inode } of paths) {
    if (!first.has(inode)) first.set(inode, path);
    out[path] =
      inode.kind === "dir"
        ? "<dir>"
        : `${(await buffer(inode.content!.open())).toString()} @${first.get(inode)}`;
  }
  return out;
}

function toMembers(ops: Op[]): RawMember[] {
  return ops.map((op) => {
    const slash = op.path.lastIndexOf("/");
    const dir = op.path.slice(0, slash + 1);
    const base = op.path.slice(slash + 1);
    if (op.kind === "wh") return { name: `${dir}.wh.${base}` };
    if (op.kind === "opq") return { name: `${dir}.wh..wh..opq` };
    if (op.kind === "dir") return { name: op.path, type: "5", mode: 0o755 };
    if (op.kind === "link") return { name: op.path, type: "1", linkname: op.target };
    return { name: op.path, body: op.body };
  });
}

test(`the flattened tree equals the reference model: whiteouts, opaque dirs, hard links, dirs replaced (${RUNS.model} inputs)`, async () => {
  const path = fc
    .array(fc.constantFrom("a", "b", "c"), { minLength: 1, maxLength: 3 })
    .map((p) => p.join("/"));
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant("file" as const), path, body: fc.constantFrom("1", "2", "3") }),
    fc.record({ kind: fc.constant("dir" as const), path }),
    fc.record({ kind: fc.constant("link" as const), path, target: path }),
    fc.record({ kind: fc.constant("wh" as const), path }),
    fc.record({ kind: fc.constant("opq" as const), path: path.map((p) => `${p}/x`) }),
  );
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.array(op, { maxLength: 6 }), { minLength: 1, maxLength: 4 }),
      async (layers) => {
        const want = model(layers);
        const got = await flattenLayers(layers.map((ops) => rawTar(toMembers(ops))));
        if (want === "error" || got instanceof UserError) {
          assert.equal(got instanceof UserError ? "error" : "tree", want === "error" ? "error" : "tree");
          return;
        }
        assert.deepEqual(await describeTree(got), describeModel(want));
      },
    ),
    { numRuns: RUNS.model, interruptAfterTimeLimit: 20_000 },
  );
});

test(`mutated cpio archives are read or refused with an Error, never a hang or crash (${RUNS.mutate} inputs)`, async () => {
  const tree = new Tree();
  for (const [i, name] of ["a", "b/c", "b/d", "e"].entries()) {
    tree.ensureDir(name.includes("/") ? "b" : "", 0);
    tree.set(name, {
      inode: { kind: "file", mode: 0o644, uid: i, gid: 0, mtime: 0, content: spoolless(`body ${i}`) },
      layer: 0,
    });
  }
  const good = await buffer(writeCpio(tree, { clampMtime: 0 }));
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.nat(),
      async (flips, cut) => {
        const bad = Buffer.from(good);
        for (const [at, v] of flips) bad[at % bad.length] = v;
        try {
          for await (const e of readCpio([bad.subarray(0, cut % (bad.length + 1))]))
            assert.ok(e.name !== undefined);
        } catch (err) {
          assert.ok(err instanceof Error && !(err instanceof TypeError), String(err));
        }
      },
    ),
    { numRuns: RUNS.mutate, interruptAfterTimeLimit: 20_000 },
  );
});

function spoolless(text: string) {
  const data = Buffer.from(text);
  return { size: data.length, open: () => Readable.from([data]) };
}

test(`a failing build leaves the old output byte-identical and no temp file (${RUNS.build} inputs)`, async () => {
  let n = 0;
  let failed = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(layer, { minLength: 1, maxLength: 2 }),
      fc.boolean(),
      async (layers, verifyFails) => {
        const dir = join(work, `b${n++}`);
        await writeOciLayout(join(dir, "oci"), { layers });
        const outDir = join(dir, "out");
        await mkdir(outDir, { recursive: true });
        const out = join(outDir, "image.cpio");
        const previous = Buffer.from(`previous ${n}\n`);
        await writeFile(out, previous);
        await writeFile(`${out}.why`, previous);
        try {
          await build({
            source: `oci:${join(dir, "oci")}:latest`,
            output: out,
            compression: "none",
            minimize: "none",
            overrides: { entrypoint: "/bin/true" },
            additions: [],
            epoch: 0,
            verify: async () => {
              if (verifyFails) throw new UserError("verification refused the image");
            },
          });
          assert.ok(!verifyFails, "a failing verification fails the build");
          for await (const e of readCpio([await readFile(out)])) assertSafeName(e.name);
        } catch (err) {
          if (!(err instanceof UserError)) throw err;
          failed++;
          assert.deepEqual(await readFile(out), previous, "old output unchanged");
          assert.deepEqual(await readFile(`${out}.why`), previous, "old .why unchanged");
        }
        assert.deepEqual((await readdir(outDir)).sort(), ["image.cpio", "image.cpio.why"], "no temp file");
        await rm(dir, { recursive: true, force: true });
      },
    ),
    { numRuns: RUNS.build, interruptAfterTimeLimit: 20_000 },
  );
  assert.ok(failed > 0, "some builds failed");
});
