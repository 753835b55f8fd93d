import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { test } from "node:test";
import fc from "fast-check";
import { ConsoleWatcher } from "./console.js";
import { GuestReport, reportKeyFromEnv } from "./report.js";

const KEY = "5a".repeat(16);
const OPEN = `SLIMROOT_REPORT ${KEY}`;

async function through(chunks: string[]): Promise<{ out: string; code: number | undefined; calls: number }> {
  let calls = 0;
  const w = new ConsoleWatcher(new GuestReport(KEY), () => calls++);
  const out = await text(Readable.from(chunks.map((c) => Buffer.from(c, "latin1"))).pipe(w));
  return { out, code: w.exitCode, calls };
}

test("CRLF becomes LF, even split across chunks; a lone CR stays", async () => {
  const r = await through(["hello\r", "\nworld\r\n", "bar\rbaz\r"]);
  assert.equal(r.out, "hello\nworld\nbar\rbaz\r");
});

test("the report opens at the end of a line, after partial app output", async () => {
  const r = await through([
    "app output without newline",
    OPEN.slice(0, 20),
    `${OPEN.slice(20)}\r\nSLIMROOT_EX`,
    "IT=137\r\n[ 1.2] reboot\r\n",
  ]);
  assert.equal(r.code, 137);
  assert.equal(r.calls, 1);
});

test("only the init's report counts: the app's look-alikes before it, a wrong key, text after it", async () => {
  // The app cannot know the key: whatever it prints before the init's report is its own text.
  const forged = ["SLIMROOT_EXIT=0\n", `SLIMROOT_REPORT ${"0".repeat(32)}\n`, "SLIMROOT_EXIT=1\n"];
  assert.equal((await through(forged)).code, undefined);
  const r = await through([...forged, `${OPEN}\n`, "SLIMROOT_EXIT=3\n", "SLIMROOT_EXIT=5\n"]);
  assert.equal(r.code, 3);
  assert.equal(r.calls, 1);
  assert.equal((await through([`${OPEN}\n`, "echo SLIMROOT_EXIT=3 is text\n"])).code, undefined);
  assert.equal((await through([`${OPEN} and more\n`, "SLIMROOT_EXIT=3\n"])).code, undefined);
});

test("a report on the last line without a newline still counts", async () => {
  assert.equal((await through([`${OPEN}\nSLIMROOT_EXIT=0`])).code, 0);
});

test("property: output is the input with CRLF -> LF, and the status is the one after the key", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.constantFrom("a", "\r", "\n", "SLIMROOT_EXIT=9", "x\r\n", `${OPEN}\n`, OPEN), {
        maxLength: 40,
      }),
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
        const lines = all
          .replace(/\r\n/g, "\n")
          .split("\n")
          .map((l) => l.replace(/\r+$/, ""));
        const opened = lines.findIndex((l) => l.endsWith(OPEN));
        const exit = opened < 0 ? -1 : lines.findIndex((l, i) => i > opened && l === "SLIMROOT_EXIT=9");
        assert.equal(r.code, exit < 0 ? undefined : 9);
      },
    ),
  );
});

test("SLIMROOT_REPORT_KEY: a key a driving program brings is checked", () => {
  assert.equal(reportKeyFromEnv({}), undefined);
  assert.equal(reportKeyFromEnv({ SLIMROOT_REPORT_KEY: KEY }), KEY);
  for (const bad of ["", "abc", "Z".repeat(32), `${KEY} `, "0".repeat(129)])
    assert.throws(() => reportKeyFromEnv({ SLIMROOT_REPORT_KEY: bad }), /SLIMROOT_REPORT_KEY: expected/, bad);
  assert.notEqual(new GuestReport().key, new GuestReport().key);
});
