/**
 * Fuzzes the guest init's config parser (init/conf.c) and .modinfo reader (init/modules.c)
 * on the host: test/fixtures/init-fuzz.c is built from the init's own sources with
 * AddressSanitizer and UBSan, and fast-check feeds it crafted and random configs and module
 * files in batches (one harness process per batch, one forked child per input).
 *
 * Every input must end accepted with the parsed config's invariants holding (status 0) or
 * refused with one `slimroot-init:` line (125); a sanitizer report or a crash fails the test
 * and shows the input. Bounded: a fixed number of runs per property, each property also cut
 * off after a time limit (fast-check's interruptAfterTimeLimit), reported if it was.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, type TestContext, test } from "node:test";
import { promisify } from "node:util";
import fc from "fast-check";
import { repoRoot } from "./support/kernel.js";

const run = promisify(execFile);
const INPUTS_PER_RUN = 25;
const TIME_LIMIT_MS = 60_000;

let work = "";
let harness = "";

type Kind = "a" | "r" | "m" | "M";
type Rec = [Kind, Uint8Array];

interface Outcome {
  statuses: number[];
  stderr: string;
}

/** Batches still running: fast-check's time limit can end a property while one is in flight. */
const inFlight = new Set<Promise<Outcome>>();

/** One harness process for a batch of inputs. */
function feed(records: readonly Rec[]): Promise<Outcome> {
  const run = feedBatch(records);
  inFlight.add(run);
  return run.finally(() => inFlight.delete(run));
}

async function feedBatch(records: readonly Rec[]): Promise<Outcome> {
  const dir = await mkdtemp(join(work, "batch-"));
  const child = spawn(harness, [dir], {
    stdio: ["pipe", "pipe", "pipe"],
    env: {
      ...process.env,
      ASAN_OPTIONS: "detect_leaks=0:abort_on_error=1",
      UBSAN_OPTIONS: "print_stacktrace=1",
    },
  });
  let out = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d;
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr = (stderr + d).slice(-20_000);
  });
  const frames = records.map(([kind, body]) => {
    const head = Buffer.alloc(5);
    head[0] = kind.charCodeAt(0);
    head.writeUInt32LE(body.length, 1);
    return Buffer.concat([head, body]);
  });
  child.stdin.on("error", () => undefined); // a harness that died early: its status says why
  child.stdin.end(Buffer.concat(frames));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  await rm(dir, { recursive: true, force: true });
  assert.equal(code, 0, `harness exited ${code}: ${stderr}`);
  const statuses = out
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => Number(l.split(" ")[1]));
  assert.equal(statuses.length, records.length, `harness answered ${statuses.length} of ${records.length}`);
  return { statuses, stderr };
}

/** Every input accepted (0) or refused with one line (125). */
function assertHandled(records: readonly Rec[], o: Outcome): void {
  o.statuses.forEach((s, i) => {
    const [kind, body] = records[i]!;
    assert.ok(
      s === 0 || s === 125,
      `input ${i} (${kind}) ended with status ${s}${s === 98 ? " (an invariant broke)" : ""}:\n` +
        `${JSON.stringify(Buffer.from(body).toString("latin1")).slice(0, 2000)}\n${o.stderr.slice(-4000)}`,
    );
  });
}

const enc = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));

// ---- configs ----

const KEYS = [
  "version",
  "arg",
  "env",
  "workdir",
  "uid",
  "gid",
  "groups",
  "user",
  "port",
  "hostname",
  "ip",
  "gateway",
  "dns",
  "modules",
  "trace",
];
const octet = fc.oneof(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 99999 }));
const value = fc.oneof(
  fc.string({ unit: fc.constantFrom(..."0123456789./,=:-abc \\n\t\r#".split("")), maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }).map((s) => s.replace(/[\n\0]/g, "")),
  fc.bigInt({ min: -1n, max: 1n << 70n }).map(String),
  fc
    .tuple(octet, octet, octet, octet, fc.option(fc.integer({ min: -1, max: 99 })))
    .map(([a, b, c, d, p]) => `${a}.${b}.${c}.${d}${p === null ? "" : `/${p}`}`),
  fc.array(fc.integer({ min: 0, max: 5_000_000_000 }), { maxLength: 70 }).map((g) => g.join(",")),
  fc.constantFrom("", "\\", "\\\\", "\\n", "=", "=x", "1", "0", "4294967295", "4294967294", "x".repeat(65)),
);
const line = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(fc.constantFrom(...KEYS), value).map(([k, v]) => `${k} ${v}`) },
  { weight: 1, arbitrary: fc.tuple(fc.string({ maxLength: 10 }), value).map(([k, v]) => `${k} ${v}`) },
  { weight: 1, arbitrary: fc.constantFrom("", "#", "# comment", " ", "arg", "env", "version 2", "\r") },
);
const confText = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(fc.array(line, { maxLength: 30 }), fc.boolean())
      .map(([ls, nl]) => enc(ls.join("\n") + (nl ? "\n" : ""))),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 600 }) },
);

// ---- module files ----

/** A little-endian ELF64 relocatable with .shstrtab and .modinfo, as the init reads them. */
function elfModule(modinfo: Uint8Array, extraSections = 0): Buffer {
  const shstr = Buffer.from("\0.shstrtab\0.modinfo\0.text\0", "latin1");
  const dataOff = 64;
  const modOff = dataOff + shstr.length;
  const shoff = (modOff + modinfo.length + 7) & ~7;
  const shnum = 3 + extraSections;
  const f = Buffer.alloc(shoff + shnum * 64);
  f.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  f.writeUInt16LE(1, 16); // ET_REL
  f.writeUInt16LE(62, 18); // x86-64
  f.writeUInt32LE(1, 20);
  f.writeBigUInt64LE(BigInt(shoff), 0x28);
  f.writeUInt16LE(64, 0x34);
  f.writeUInt16LE(64, 0x3a);
  f.writeUInt16LE(shnum, 0x3c);
  f.writeUInt16LE(1, 0x3e);
  shstr.copy(f, dataOff);
  f.set(modinfo, modOff);
  const sh = (i: number, name: number, type: number, off: number, size: number) => {
    const b = shoff + i * 64;
    f.writeUInt32LE(name, b);
    f.writeUInt32LE(type, b + 4);
    f.writeBigUInt64LE(BigInt(off), b + 24);
    f.writeBigUInt64LE(BigInt(size), b + 32);
  };
  sh(1, 1, 3, dataOff, shstr.length); // .shstrtab
  sh(2, 11, 1, modOff, modinfo.length); // .modinfo
  for (let i = 3; i < shnum; i++) sh(i, 20, 1, 0, 0); // .text
  return f;
}

const NAMES = ["a", "b", "c", "virtio", "net-x", ""];
const depends = fc
  .array(fc.constantFrom(...NAMES, "missing", ",", ""), { maxLength: 5 })
  .map((d) => d.join(","));
const modinfoText = fc
  .tuple(
    fc.option(fc.constantFrom(...NAMES)),
    fc.option(depends),
    fc.array(fc.string({ unit: "binary", maxLength: 20 }), { maxLength: 4 }),
    fc.boolean(),
  )
  .map(([name, dep, junk, endNul]) => {
    const parts = [
      ...junk,
      ...(name !== null ? [`name=${name}`] : []),
      ...(dep !== null ? [`depends=${dep}`] : []),
    ];
    return enc(parts.join("\0") + (endNul ? "\0" : ""));
  });

/** Overwrites a few bytes, mostly in the ELF header and the section headers, maybe truncates. */
const mutated = fc
  .tuple(
    modinfoText,
    fc.integer({ min: 0, max: 3 }),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean()), { maxLength: 8 }),
    fc.option(fc.nat()),
  )
  .map(([mi, extra, edits, cut]) => {
    const f = elfModule(mi, extra);
    const shoff = Number(f.readBigUInt64LE(0x28));
    for (const [at, byte, inHeader] of edits) {
      const pos = inHeader ? at % 64 : shoff + (at % (f.length - shoff));
      f[pos] = byte;
    }
    return new Uint8Array(cut === null ? f : f.subarray(0, cut % (f.length + 1)));
  });

const moduleFile = fc.oneof(
  { weight: 2, arbitrary: modinfoText.map((m) => new Uint8Array(elfModule(m))) },
  { weight: 5, arbitrary: mutated },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }) },
);

/** 'M' payload: [count]([u32 length][bytes])*. */
const moduleSet = fc
  .array(
    modinfoText.map((m) => elfModule(m)),
    { maxLength: 8 },
  )
  .map((files) => {
    const parts: Buffer[] = [Buffer.from([files.length])];
    for (const f of files) {
      const n = Buffer.alloc(4);
      n.writeUInt32LE(f.length);
      parts.push(n, f);
    }
    return new Uint8Array(Buffer.concat(parts));
  });

async function fuzz(t: TestContext, arb: fc.Arbitrary<Rec>, numRuns: number): Promise<void> {
  let runs = 0;
  let inputs = 0;
  let accepted = 0;
  const started = Date.now();
  await fc.assert(
    fc.asyncProperty(fc.array(arb, { minLength: 1, maxLength: INPUTS_PER_RUN }), async (records) => {
      runs++;
      inputs += records.length;
      const o = await feed(records);
      assertHandled(records, o);
      accepted += o.statuses.filter((s) => s === 0).length;
    }),
    { numRuns, interruptAfterTimeLimit: TIME_LIMIT_MS, markInterruptAsFailure: false },
  );
  const cut = runs < numRuns ? ` (cut off by the ${TIME_LIMIT_MS / 1000} s limit)` : "";
  t.diagnostic(
    `${inputs} inputs (${accepted} accepted, ${inputs - accepted} refused) in ${runs} batches in ${Date.now() - started} ms${cut}`,
  );
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-init-fuzz-"));
  harness = join(work, "init-fuzz");
  const init = join(repoRoot, "init");
  await run("gcc", [
    "-std=gnu11",
    "-g",
    "-O1",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-fno-tree-loop-distribute-patterns",
    // lib.c's own mem* would clash with the C library's that the sanitizers' runtime uses
    "-Dmemcpy=sr_memcpy",
    "-Dmemmove=sr_memmove",
    "-Dmemset=sr_memset",
    "-Dmemcmp=sr_memcmp",
    `-I${init}`,
    "-o",
    harness,
    join(repoRoot, "test/fixtures/init-fuzz.c"),
    join(init, "conf.c"),
    join(init, "lib.c"),
  ]);
});

after(async () => {
  // A batch cut off by the time limit may still be writing in `work`: let it end first.
  await Promise.allSettled(inFlight);
  if (work) await rm(work, { recursive: true, force: true });
});

describe("init config parser (conf.c) under ASan/UBSan", { timeout: 10 * TIME_LIMIT_MS }, () => {
  test("crafted edge cases", async () => {
    const cases = [
      "",
      "\n\n\n",
      "version 1\n",
      "arg sh\narg -c\narg echo\\nhi\\\\\n",
      "arg \\",
      "env =x\n",
      "env A\n",
      "env A=1\nenv A=2\nenv B=\n",
      "uid 4294967295\n",
      "uid 99999999999999999999999999\n",
      "groups ,\n",
      "groups 1,,2\n",
      `groups ${Array.from({ length: 65 }, (_, i) => i).join(",")}\n`,
      "ip 10.0.2.15/33\n",
      "ip 10.0.2.15/\n",
      "ip 256.0.0.1\n",
      "ip 1.2.3\n",
      "ip 00001.2.3.4\n",
      "dns 1\ndns 2\ndns 3\ndns 4\n",
      `hostname ${"h".repeat(64)}\n`,
      `hostname ${"h".repeat(65)}\n`,
      "trace 2\n",
      "version 1\r\n",
      `${"arg x\n".repeat(4097)}`,
      `${Array.from({ length: 4097 }, (_, i) => `env K${i}=v`).join("\n")}\n`,
      `arg ${"y".repeat(1 << 20)}\n`, // over the 1 MiB limit: refused
      `arg ${"y".repeat((1 << 20) - 10)}\n`,
    ].map(enc);
    const records: Rec[] = [...cases.map((c): Rec => ["a", c]), ...cases.map((c): Rec => ["r", c])];
    assertHandled(records, await feed(records));
  });

  test("generated configs as app.conf and run.conf", (t) =>
    fuzz(
      t,
      fc.tuple(fc.constantFrom<Kind>("a", "r"), confText).map(([k, b]): Rec => [k, b]),
      400,
    ));
});

describe("init .modinfo reader and module order (modules.c) under ASan/UBSan", {
  timeout: 10 * TIME_LIMIT_MS,
}, () => {
  test("a warning names the errno in words (errtab strings are terminated)", async () => {
    const o = await feed([["m", new Uint8Array(elfModule(enc("name=demo\0")))]]);
    assert.deepEqual(o.statuses, [0]);
    // finit_module is stubbed to EPERM; "operation not permitted" filled its table slot
    // exactly, so its NUL was missing and the next entry's text followed it.
    assert.match(o.stderr, /^slimroot-init: module demo: operation not permitted$/m);
  });

  test("crafted module files", async () => {
    const big = (n: number) =>
      new Uint8Array(elfModule(enc(`name=${"n".repeat(n)}\0depends=${"d,".repeat(n)}`)));
    const headerOnly = elfModule(enc("name=x")).subarray(0, 64);
    const files = [
      new Uint8Array(0),
      enc("\x7fELF"),
      new Uint8Array(headerOnly),
      big(5000),
      new Uint8Array(elfModule(enc("name=x"))), // no NUL at the end of the section
      new Uint8Array(elfModule(enc("depends=x,x,x\0name=x\0"))), // depends on itself
      new Uint8Array(elfModule(enc(""), 3)),
    ];
    const records: Rec[] = files.map((f): Rec => ["m", f]);
    assertHandled(records, await feed(records));
  });

  test("generated module files", (t) =>
    fuzz(
      t,
      moduleFile.map((b): Rec => ["m", b]),
      300,
    ));

  test("generated sets of modules depending on each other (cycles, missing, self)", (t) =>
    fuzz(
      t,
      moduleSet.map((b): Rec => ["M", b]),
      100,
    ));
});
