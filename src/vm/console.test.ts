import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { test } from "node:test";
import fc from "fast-check";
import { ConsoleWatcher } from "./console.js";

async function through(chunks: string[]): Promise<{ out: string; code: number | undefined; calls: number }> {
  let calls = 0;
  const w = new ConsoleWatcher(() => calls++);
  const out = await text(Readable.from(chunks.map((c) => Buffer.from(c, "latin1"))).pipe(w));
  return { out, code: w.exitCode, calls };
}

test("CRLF becomes LF, even split across chunks; a lone CR stays", async () => {
  const r = await through(["hello\r", "\nworld\r\n", "bar\rbaz\r"]);
  assert.equal(r.out, "hello\nworld\nbar\rbaz\r");
});

test("the exit report is found at the end of a line, after partial app output", async () => {
  const r = await through(["app output without newline", "SLIMROOT_EX", "IT=137\r\n[ 1.2] reboot\r\n"]);
  assert.equal(r.code, 137);
  assert.equal(r.calls, 1);
});

test("only the first report counts, and not one in the middle of a line", async () => {
  assert.equal((await through(["echo SLIMROOT_EXIT=3 is text\n"])).code, undefined);
  const r = await through(["SLIMROOT_EXIT=4\nSLIMROOT_EXIT=5\n"]);
  assert.equal(r.code, 4);
  assert.equal(r.calls, 1);
});

test("a report on the last line without a newline still counts", async () => {
  assert.equal((await through(["SLIMROOT_EXIT=0"])).code, 0);
});

test("property: output is the input with CRLF -> LF, however it is chunked", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.constantFrom("a", "\r", "\n", "SLIMROOT_EXIT=9", "x\r\n"), { maxLength: 40 }),
      fc.array(fc.nat(5), { maxLength: 10 }),
      async (parts, cuts) => {
        const all = parts.join("");
        const chunks: string[] = [];
        let at = 0;
        for (const c of cuts) {
          chunks.push(all.slice(at, at + c));
          at += c;
        }
        chunks.push(all.slice(at));
        const r = await through(chunks.filter((c) => c.length));
        assert.equal(r.out, all.replace(/\r\n/g, "\n"));
        const lines = all.replace(/\r\n/g, "\n").split("\n");
        const expected = lines.find((l) => /SLIMROOT_EXIT=9$/.test(l.replace(/\r+$/, "")));
        assert.equal(r.code, expected === undefined ? undefined : 9);
      },
    ),
  );
});
