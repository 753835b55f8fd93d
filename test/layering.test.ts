/**
 * The layering rules of .dependency-cruiser.cjs (run by `make lint`) bite: each crafted import
 * that breaks one fails depcruise naming that rule, a tree that keeps them passes, and
 * docs/architecture.md quotes the same table.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const config = join(root, ".dependency-cruiser.cjs");
const depcruise = join(root, "node_modules", ".bin", "depcruise");
const { LAYERS, LEAVES } = createRequire(import.meta.url)(config).layers as {
  LAYERS: Record<string, string[]>;
  LEAVES: string[];
};

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-layering-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Runs the project's rules over a made-up src/ of `files`; the exit code and the report. */
async function cruise(name: string, files: Record<string, string>): Promise<{ code: number; out: string }> {
  const dir = join(work, name);
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, "src", path)), { recursive: true });
    await writeFile(join(dir, "src", path), text);
  }
  await writeFile(join(dir, "tsconfig.json"), await readFile(join(root, "tsconfig.json")));
  return new Promise((resolve) => {
    execFile(depcruise, ["src", "--config", config], { cwd: dir }, (err, stdout, stderr) => {
      resolve({ code: err ? Number(err.code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

const leaf = { "util/errors.ts": "export class UserError extends Error {}\n" };

test("a tree that keeps the rules passes", async () => {
  const r = await cruise("clean", {
    ...leaf,
    "tree/tree.ts": 'import { UserError } from "../util/errors.js";\nexport const t = UserError;\n',
    "vm/run.ts": 'import { t } from "../tree/tree.js";\nexport const r = t;\n',
    "cli/main.ts": 'import { r } from "../vm/run.js";\nexport const m = r;\n',
  });
  assert.equal(r.code, 0, r.out);
});

test("vm/ importing cli/ fails: cli only wires, and vm's row has no cli", async () => {
  const r = await cruise("cli", {
    ...leaf,
    "cli/main.ts": "export const m = 1;\n",
    "vm/run.ts": 'import type { m } from "../cli/main.js";\nexport type R = typeof m;\n',
  });
  assert.notEqual(r.code, 0);
  assert.match(r.out, /cli-only-wires: src\/vm\/run\.ts → src\/cli\/main\.ts/);
  assert.match(r.out, /layer-vm: src\/vm\/run\.ts → src\/cli\/main\.ts/);
});

test("kernel/ and vm/ importing each other fails as a folder cycle", async () => {
  const r = await cruise("loop", {
    "kernel/a.ts": 'import { b } from "../vm/b.js";\nexport const a = () => b;\n',
    "vm/b.ts": 'import type { a } from "../kernel/a.js";\nexport const b = 1;\nexport type A = typeof a;\n',
  });
  assert.notEqual(r.code, 0);
  assert.match(r.out, /no-folder-cycles/);
  assert.match(r.out, /layer-kernel: src\/kernel\/a\.ts → src\/vm\/b\.ts/);
});

test("a leaf importing a stage fails, and so does a stage importing pipeline/", async () => {
  const r = await cruise("leaf", {
    "tree/tree.ts": "export const t = 1;\n",
    "util/x.ts": 'import { t } from "../tree/tree.js";\nexport const x = t;\n',
    "pipeline/build.ts": "export const build = 1;\n",
    "inspect/i.ts": 'import { build } from "../pipeline/build.js";\nexport const i = build;\n',
  });
  assert.notEqual(r.code, 0);
  assert.match(r.out, /leaves-import-no-stage: src\/util\/x\.ts → src\/tree\/tree\.ts/);
  assert.match(r.out, /layer-inspect: src\/inspect\/i\.ts → src\/pipeline\/build\.ts/);
});

test("a module cycle (type-only) inside one folder fails, and a folder without a row fails", async () => {
  const r = await cruise("cycle", {
    "util/a.ts": 'import type { B } from "./b.js";\nexport type A = B | 1;\n',
    "util/b.ts": 'import type { A } from "./a.js";\nexport type B = A | 2;\n',
    "newstage/n.ts": 'import type { A } from "../util/a.js";\nexport type N = A;\n',
  });
  assert.notEqual(r.code, 0);
  assert.match(r.out, /no-module-cycles: src\/util\/a\.ts/);
  assert.match(r.out, /unknown-folder: src\/newstage\/n\.ts/);
});

test("docs/architecture.md quotes the table the rules are made of", async () => {
  const doc = await readFile(join(root, "docs", "architecture.md"), "utf8");
  const rows = new Map<string, string[]>();
  for (const m of doc.matchAll(/^\| `(\w+)\/` \| (.*) \|$/gm)) {
    rows.set(
      m[1]!,
      [...m[2]!.matchAll(/`(\w+)\/`/g)].map((x) => x[1]!),
    );
  }
  const expected = new Map(Object.entries(LAYERS).map(([k, v]) => [k, k === "cli" ? [] : v]));
  assert.deepEqual(rows, expected);
  const leaves = doc.match(/^- Leaves: (.*)$/m)?.[1] ?? "";
  assert.deepEqual(
    [...leaves.matchAll(/`(\w+)\/`/g)].map((x) => x[1]),
    LEAVES,
  );
});

test("only artifact/ and compress/ import the magic-byte modules: vm/ doing so fails", async () => {
  const magic = {
    "disk/identity.ts": "export interface DiskIdentity { fstype: string }\n",
    "disk/magic.ts":
      'import type { DiskIdentity } from "./identity.js";\nexport const diskIdentityOf = (): DiskIdentity | undefined => undefined;\n',
    "artifact/identify.ts":
      'import { diskIdentityOf } from "../disk/magic.js";\nexport const identify = diskIdentityOf;\n',
  };
  const ok = await cruise("magic-ok", magic);
  assert.equal(ok.code, 0, ok.out);
  const r = await cruise("magic", {
    ...magic,
    "vm/disks.ts": 'import { diskIdentityOf } from "../disk/magic.js";\nexport const v = diskIdentityOf;\n',
  });
  assert.notEqual(r.code, 0);
  assert.match(r.out, /magic-bytes-in-artifact: src\/vm\/disks\.ts → src\/disk\/magic\.ts/);
});
