import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { nameFromBytes } from "../tree/path.js";
import { encodeListLine, type ListEntry, parseList } from "./gen-list.js";

test("every line type parses as gen_init_cpio reads it", () => {
  const text = [
    "# A simple initramfs",
    "",
    "dir /dev 0755 0 0",
    "nod /dev/console 0600 0 0 c 5 1",
    "\tnod /dev/vda 0660 0 6 b 254 0  ",
    "slink /bin/sh busybox 777 0 0",
    // biome-ignore lint/suspicious/noTemplateCurlyInString: gen_init_cpio's own ${VAR}
    "file /bin/busybox ${BB} 0755 0 0 /bin/ls /bin/cat",
    "pipe /run/fifo 0644 1000 1000",
    "sock /run/sock 0755 0 0",
  ].join("\n");
  const got = parseList(text, "l", { BB: "/bin/busybox" }).map((e) => [e.line, e.entry]);
  assert.deepEqual(got, [
    [3, { type: "dir", name: "/dev", mode: 0o755, uid: 0, gid: 0 }],
    [4, { type: "nod", name: "/dev/console", dev: "c", major: 5, minor: 1, mode: 0o600, uid: 0, gid: 0 }],
    [5, { type: "nod", name: "/dev/vda", dev: "b", major: 254, minor: 0, mode: 0o660, uid: 0, gid: 6 }],
    [6, { type: "slink", name: "/bin/sh", target: "busybox", mode: 0o777, uid: 0, gid: 0 }],
    [
      7,
      {
        type: "file",
        names: ["/bin/busybox", "/bin/ls", "/bin/cat"],
        location: "/bin/busybox",
        mode: 0o755,
        uid: 0,
        gid: 0,
      },
    ],
    [8, { type: "pipe", name: "/run/fifo", mode: 0o644, uid: 1000, gid: 1000 }],
    [9, { type: "sock", name: "/run/sock", mode: 0o755, uid: 0, gid: 0 }],
  ]);
});

test("a bad line is refused with FILE:LINE", () => {
  const cases: [string, RegExp][] = [
    ["link /a /b 0755 0 0", /^lst:2: unknown type "link"/],
    ["dir /a 0755 0", /^lst:2: expected "dir <name> <mode> <uid> <gid>", got 3 fields/],
    ["dir /a 0755 0 0 extra", /^lst:2: expected "dir/],
    ["dir /a 0855 0 0", /^lst:2: mode \(octal, at most 7777\) "0855" is not valid/],
    ["dir /a 17777 0 0", /^lst:2: mode/],
    ["dir /a 0755 -1 0", /^lst:2: uid "-1" is not valid/],
    ["nod /a 0600 0 0 x 1 1", /^lst:2: device type x: expected b or c/],
    // biome-ignore lint/suspicious/noTemplateCurlyInString: gen_init_cpio's own ${VAR}
    ["file /a ${NOPE}/a 0644 0 0", /^lst:2: \$\{NOPE\} in the location is not set/],
    ["  # an indented comment is not a comment", /^lst:2: unknown type "#"/],
  ];
  for (const [line, message] of cases)
    assert.throws(() => parseList(`# ok\n${line}\n`, "lst", {}), { message }, line);
});

/** Any bytes but NUL and the whitespace gen_init_cpio splits at: names are bytes (tree/path.ts). */
const bytesWord = (exclude: number[]) =>
  fc
    .uint8Array({ minLength: 1, maxLength: 20 })
    .map((a) => a.filter((b) => b !== 0 && !exclude.includes(b)))
    .filter((a) => a.length > 0)
    .map((a) => nameFromBytes(a));
const SPACE = [0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d];
const word = bytesWord(SPACE);
/** A location: gen_init_cpio expands ${VAR} there, so no "$" in generated ones. */
const location = bytesWord([...SPACE, 0x24]);
const owned = {
  mode: fc.integer({ min: 0, max: 0o7777 }),
  uid: fc.integer({ min: 0, max: 70000 }),
  gid: fc.integer({ min: 0, max: 70000 }),
};
const entry: fc.Arbitrary<ListEntry> = fc.oneof(
  fc.record({
    type: fc.constant("file" as const),
    names: fc.array(word, { minLength: 1, maxLength: 3 }),
    location,
    ...owned,
  }),
  fc.record({
    type: fc.constantFrom("dir" as const, "pipe" as const, "sock" as const),
    name: word,
    ...owned,
  }),
  fc.record({ type: fc.constant("slink" as const), name: word, target: word, ...owned }),
  fc.record({
    type: fc.constant("nod" as const),
    name: word,
    dev: fc.constantFrom("b" as const, "c" as const),
    major: fc.integer({ min: 0, max: 4095 }),
    minor: fc.integer({ min: 0, max: 1 << 20 }),
    ...owned,
  }),
);

test("encoded lines parse back to the same entries", () => {
  fc.assert(
    fc.property(fc.array(entry, { maxLength: 20 }), (entries) => {
      const text = Buffer.concat(entries.flatMap((e) => [encodeListLine(e), Buffer.from("\n")]));
      assert.deepEqual(
        parseList(nameFromBytes(text), "x", {}).map((e) => e.entry),
        entries.map((e) => ({ ...e })),
      );
    }),
    { numRuns: 200 },
  );
});

test("names with whitespace are refused when writing", () => {
  assert.throws(
    () => encodeListLine({ type: "dir", name: "/a b", mode: 0o755, uid: 0, gid: 0 }),
    /cannot hold an empty field or whitespace/,
  );
});
