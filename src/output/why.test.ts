import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { nameBytes, nameFromBytes } from "../util/name-bytes.js";
import { checkWhyImage, encodeWhy, fileSha256, matchingWhyHeader, parseWhy, type WhyHeader } from "./why.js";

/** Any name a tar can carry (bytes, no NUL), as the tree holds it. */
const anyName = fc
  .uint8Array({ minLength: 1, maxLength: 24 })
  .map((b) => nameFromBytes(Buffer.from(b.map((x) => x || 0x0a))));
const header: WhyHeader = {
  format: "cpio",
  compressor: "xz 5.4.1",
  cpioSha256: "a".repeat(64),
  imageSha256: "b".repeat(64),
};

test(".why: every name and reason round-trips byte for byte, and none forges a line or the header", () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.tuple(anyName, anyName), { selector: ([p]) => p, maxLength: 20 }),
      (entries) => {
        const text = encodeWhy(header, entries);
        assert.equal(text.split("\n").length, entries.length + 2, "one line per path, after the header");
        const why = parseWhy(text, "x.why");
        assert.deepEqual(why.header, header);
        assert.deepEqual([...why.reasons], entries);
        for (const [p, r] of entries) {
          assert.deepEqual(nameBytes(why.reasons.get(p) ?? ""), nameBytes(r));
        }
      },
    ),
  );
});

test(".why: a trace's failed lookups follow the entries and round-trip; they are no entries", () => {
  const missing = ["/etc/app/optional.conf", "/x/\ny\udce9"];
  const why = parseWhy(encodeWhy(header, [["etc", "kept"]], missing), "x.why");
  assert.deepEqual(why.missing, missing);
  assert.deepEqual([...why.reasons], [["etc", "kept"]]);
});

test(".why: the names that forged v1's lines stay names", () => {
  const forged = `etc/x\n# cpio sha256: ${"0".repeat(64)}\n/etc/shadow\tforged`;
  const why = parseWhy(encodeWhy(header, [[forged, "kept"]]), "x.why");
  assert.equal(why.header.cpioSha256, header.cpioSha256);
  assert.deepEqual([...why.reasons], [[forged, "kept"]]);
  // A name that is not UTF-8 is written as its bytes, so any JSON reader can read the line.
  const latin1 = nameFromBytes(Buffer.from("caf\xe9", "latin1"));
  const line = encodeWhy(header, [[latin1, "x"]]).split("\n")[1]!;
  assert.deepEqual(JSON.parse(line), {
    pathBase64: Buffer.from("/caf\xe9", "latin1").toString("base64"),
    why: "x",
  });
});

test(".why: an old (v1) file, a bad line or a path twice is refused, naming the file and line", () => {
  assert.throws(
    () => parseWhy("# slimroot why v1: image path, tab, why it is in\n/\timage root\n", "a.why"),
    /^Error: a\.why: not a slimroot\.why version 2 file/,
  );
  const head = `${JSON.stringify({ type: "slimroot.why", version: 2, format: "cpio" })}\n`;
  assert.throws(() => parseWhy(`${head}/etc\tx\n`, "a.why"), /a\.why: line 2: not a JSON object/);
  assert.throws(
    () => parseWhy(`${head}{"path":"/a","pathBase64":"L2E=","why":"x"}\n`, "a.why"),
    /line 2: expected a string "path" or "pathBase64"/,
  );
  assert.throws(
    () => parseWhy(`${head}{"path":"/a\\udce9","why":"x"}\n`, "a.why"),
    /line 2: "path" is not valid UTF-8/,
  );
  assert.throws(
    () => parseWhy(`${head}{"path":"/a","why":"x"}\n{"path":"/a","why":"y"}\n`, "a.why"),
    /line 3: \/a is listed twice/,
  );
  assert.throws(
    () =>
      parseWhy(
        `${JSON.stringify({ type: "slimroot.why", version: 2, format: "cpio", cpioSha256: "0" })}\n`,
        "a.why",
      ),
    /line 1: bad "cpioSha256"/,
  );
});

test(".why: used only for the image it was written with", () => {
  const why = parseWhy(encodeWhy(header, []), "img.why");
  checkWhyImage(why, "img", "b".repeat(64));
  assert.throws(
    () => checkWhyImage(why, "img", "c".repeat(64)),
    /^Error: img\.why: written for another image \(sha256 bbbbbbbbbbbb\.\.\., img is cccccccccccc\.\.\.\)$/,
  );
  const unchecked = parseWhy(encodeWhy({ format: "ext4" }, []), "img.why");
  assert.throws(() => checkWhyImage(unchecked, "img", "c".repeat(64)), /records no image sha256/);
});

test(".why: a layered initramfs's parts round-trip; parts that are not a list of {name, bytes, sha256} are refused", () => {
  const parts = [
    {
      name: "layer 0 libc6:amd64",
      bytes: 7,
      sha256: "d".repeat(64),
      package: "libc6:amd64",
      version: "2.36-9",
    },
    { name: "layer 0", bytes: 10, sha256: "a".repeat(64) },
    { name: "slimroot", bytes: 2, sha256: "b".repeat(64) },
  ];
  const header: WhyHeader = { format: "cpio", imageSha256: "c".repeat(64), parts };
  assert.deepEqual(parseWhy(encodeWhy(header, [["", "image root"]]), "x.why").header, header);
  for (const bad of [
    [],
    [{ name: "l", bytes: 0, sha256: "a".repeat(64) }],
    [{ name: "l", bytes: 1, sha256: "zz" }],
    // A package part names its package and its version, both.
    [{ name: "l", bytes: 1, sha256: "a".repeat(64), package: "libc6" }],
    [{ name: "l", bytes: 1, sha256: "a".repeat(64), package: 1, version: "1" }],
    "p",
  ]) {
    const text = encodeWhy({ format: "cpio", parts: bad } as unknown as WhyHeader, [["", "r"]]);
    assert.throws(() => parseWhy(text, "x.why"), /^Error: x\.why: line 1: bad "parts"$/);
  }
});

test(".why: a cpio's footprint round-trips; one that is not counts of bytes and inodes is refused", () => {
  const footprint = { tmpfsBytes: 8192, inodes: 3, largePages: { 16384: 16384, 65536: 65536 } };
  const header: WhyHeader = { format: "cpio", imageSha256: "c".repeat(64), footprint };
  assert.deepEqual(parseWhy(encodeWhy(header, [["", "image root"]]), "x.why").header, header);
  for (const bad of [
    { inodes: 1, largePages: {} },
    { tmpfsBytes: -1, inodes: 1, largePages: {} },
    { tmpfsBytes: 1.5, inodes: 1, largePages: {} },
    { tmpfsBytes: 1, inodes: "1", largePages: {} },
    { tmpfsBytes: 1, inodes: 1 },
    { tmpfsBytes: 1, inodes: 1, largePages: [] },
    { tmpfsBytes: 1, inodes: 1, largePages: { x: 1 } },
    { tmpfsBytes: 1, inodes: 1, largePages: { 16384: 2 ** 60 } },
    "f",
  ]) {
    const text = encodeWhy({ format: "cpio", footprint: bad } as unknown as WhyHeader, [["", "r"]]);
    assert.throws(() => parseWhy(text, "x.why"), /^Error: x\.why: line 1: bad "footprint"$/);
  }
});

test(".why: its header is taken as a shortcut only for the very image it was written with", async () => {
  const dir = await mkdtemp(join(tmpdir(), "slimroot-why-"));
  try {
    const image = join(dir, "x.cpio");
    await writeFile(image, "the image");
    const footprint = { tmpfsBytes: 4096, inodes: 1, largePages: {} };
    const header = (sha: string): WhyHeader => ({ format: "cpio", imageSha256: sha, footprint });
    assert.equal(await matchingWhyHeader(image), undefined, "no .why");
    await writeFile(`${image}.why`, encodeWhy(header(await fileSha256(image)), [["", "r"]]));
    assert.deepEqual(await matchingWhyHeader(image), header(await fileSha256(image)));
    await writeFile(image, "the image, changed");
    assert.equal(await matchingWhyHeader(image), undefined, "another image's");
    await writeFile(`${image}.why`, "not json\n");
    assert.equal(await matchingWhyHeader(image), undefined, "not a .why");
    // A FIFO is never opened (it would block): no header, at once.
    await rm(`${image}.why`);
    execFileSync("mkfifo", [`${image}.why`]);
    assert.equal(await matchingWhyHeader(image), undefined, "a FIFO");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
