import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { link, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { writeFilesAtomically } from "./atomic.js";
import { OutputDir } from "./dir.js";
import { checkOutputs, OUTPUT_MARK } from "./output.js";

let work = "";
let input = "";
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-output-"));
  input = join(work, "input.tar");
  await writeFile(input, "the input\n");
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const inputs = () => [{ path: input, what: `tar:${input}` }];

test("every trick on a file output and on a directory output is refused in one line naming the flag", async (t) => {
  const dir = await mkdtemp(join(work, "tricks-"));
  await symlink(input, join(dir, "symlink"));
  await link(input, join(dir, "hardlink"));
  execFileSync("mkfifo", [join(dir, "fifo")]);
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(join(dir, "socket"), resolve));
  t.after(() => server.close());
  await mkdir(join(dir, "user"));
  await writeFile(join(dir, "user", "mine"), "the user's\n");
  const cases: [string, RegExp, RegExp][] = [
    [input, /is the input tar:/, /is the input tar:/],
    [join(dir, "symlink"), /is the input tar:/, /is the input tar:/],
    [join(dir, "hardlink"), /is the input tar:/, /is the input tar:/],
    ["/dev/null", /is a character device; give the path of a file/, /is a character device, not a directory/],
    [join(dir, "fifo"), /is a named pipe; give the path of a file/, /is a named pipe, not a directory/],
    [join(dir, "socket"), /is a socket; give the path of a file/, /is a socket, not a directory/],
    [join(dir, "user"), /is a directory; give the path of a file/, /holds files slimroot did not write/],
    [join(dir, "no", "x"), /no such directory/, /no such directory/],
  ];
  for (const [path, file, directory] of cases) {
    await t.test(path, async () => {
      const flag = "--out";
      const name = new RegExp(`^--out ${path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: `);
      await assert.rejects(checkOutputs([{ path, flag }], inputs()), (err: Error) => {
        assert.match(err.message, name);
        assert.match(err.message, file);
        assert.doesNotMatch(err.message, /\n/);
        return true;
      });
      await assert.rejects(
        checkOutputs([{ path, flag, directory: true, why: false }], inputs()),
        (err: Error) => {
          assert.match(err.message, name);
          assert.match(err.message, directory);
          return true;
        },
      );
    });
  }
  assert.equal(await readFile(input, "utf8"), "the input\n");
  assert.deepEqual(await readdir(join(dir, "user")), ["mine"]);
});

test("two outputs of one command are never the same file, sidecars and links included", async () => {
  const dir = await mkdtemp(join(work, "pairs-"));
  const a = join(dir, "a");
  await assert.rejects(
    checkOutputs(
      [
        { path: a, flag: "--json", why: false },
        { path: a, flag: "--svg", why: false },
      ],
      [],
    ),
    /^Error: --svg .*a: .*a is also written by --json .*a; give each output its own file$/,
  );
  // -o a writes a.why: --other a.why is the same file.
  await assert.rejects(
    checkOutputs([{ path: a }, { path: `${a}.why`, flag: "--other", why: false }], []),
    /^Error: --other .*a\.why is also written by -o/,
  );
  await writeFile(a, "x");
  await symlink(a, join(dir, "b"));
  await assert.rejects(
    checkOutputs(
      [
        { path: a, why: false },
        { path: join(dir, "b"), flag: "--svg", why: false },
      ],
      [],
    ),
    /is also written by -o/,
  );
  await checkOutputs(
    [
      { path: a, why: false },
      { path: join(dir, "c"), flag: "--svg", why: false },
    ],
    [],
  );
});

test("a directory replaced whole: only when slimroot's; a failed rename puts the old one back", async () => {
  const dir = await mkdtemp(join(work, "swap-"));
  const target = join(dir, "list");
  const make = (body: string) => async (tmp: string) => {
    await mkdir(tmp);
    await writeFile(join(tmp, "f"), body);
    await writeFile(join(tmp, OUTPUT_MARK), JSON.stringify({ files: ["f"] }));
    return body.length;
  };
  await writeFilesAtomically([{ target, directory: true, write: make("one") }]);
  await writeFilesAtomically([{ target, directory: true, write: make("two") }]);
  assert.equal(await readFile(join(target, "f"), "utf8"), "two");
  await checkOutputs([{ path: target, directory: true, why: false }], []);
  // The .why cannot be renamed (its directory went away): the old directory comes back.
  await mkdir(join(dir, "gone"));
  await assert.rejects(
    writeFilesAtomically(
      [
        { target, directory: true, write: make("three") },
        { target: join(dir, "gone", "list.why"), source: Readable.from(["why"]) },
      ],
      async () => rm(join(dir, "gone"), { recursive: true }),
    ),
    /ENOENT/,
  );
  assert.equal(await readFile(join(target, "f"), "utf8"), "two");
  assert.deepEqual(await readdir(dir), ["list"], "no temp or backup left");
  await writeFile(join(target, "added"), "the user's");
  await assert.rejects(
    checkOutputs([{ path: target, directory: true, why: false }], []),
    /holds added, which slimroot did not write/,
  );
});

// durable: false (run's scratch, no fsync) keeps every other promise.
for (const durable of [true, false])
  test(`an output directory${durable ? "" : " (not durable)"}: nothing changes before commit; a new one is removed on failure; stale own files go`, async () => {
    const path = join(work, durable ? "vm" : "scratch-vm");
    let out = await OutputDir.open(path, "-o", inputs(), { durable });
    await out.write([{ target: out.file("vm.json"), source: Readable.from(["{}"]) }]);
    await out.write([{ target: out.file("initrd"), source: Readable.from(["cpio"]) }]);
    await out.discard();
    assert.equal(existsSync(path), false, "made here, nothing committed: removed");

    out = await OutputDir.open(path, "-o", inputs(), { durable });
    await out.write([{ target: out.file("vm.json"), source: Readable.from(["{}"]) }]);
    out.file("vsock.sock");
    await out.commit();
    await out.discard();
    assert.deepEqual((await readdir(path)).sort(), [OUTPUT_MARK, "vm.json"]);

    out = await OutputDir.open(path, "-o", inputs(), { durable });
    await out.write([{ target: out.file("initrd"), source: Readable.from(["cpio"]) }]);
    // Written, not yet committed: the directory is as it was.
    assert.deepEqual(
      (await readdir(path)).filter((n) => !n.startsWith(".")),
      ["vm.json"],
    );
    await out.commit();
    await out.discard();
    assert.deepEqual((await readdir(path)).sort(), [OUTPUT_MARK, "initrd"]);

    // An input in it is never written over.
    await writeFile(join(path, "initrd"), "now the user's image\n");
    out = await OutputDir.open(path, "-o", [{ path: join(path, "initrd"), what: "IMAGE" }], { durable });
    await assert.rejects(
      out.write([{ target: out.file("initrd"), source: Readable.from(["cpio"]) }]),
      /^Error: -o .*vm: .*initrd is the input IMAGE; refusing to overwrite it$/,
    );
    await out.discard();
    assert.equal(await readFile(join(path, "initrd"), "utf8"), "now the user's image\n");
  });
