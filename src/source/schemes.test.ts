import assert from "node:assert/strict";
import { test } from "node:test";
import { openSource, parseSourceRef, SCHEMES } from "./schemes.js";

const opts = { platform: { os: "linux", architecture: "amd64" } };

test("every scheme is named once, and an unknown one is refused listing them all", () => {
  const names = SCHEMES.map((s) => s.scheme);
  assert.deepEqual(names, [...new Set(names)]);
  assert.throws(() => parseSourceRef("nosuch:thing"), {
    message: /^nosuch:thing: unknown image source; use one of oci:PATH\[:TAG\], .*list:FILE$/,
  });
  assert.throws(() => parseSourceRef("./no-scheme"), { message: /unknown image source/ });
});

test("a reference splits at its first colon; an empty value is refused", () => {
  assert.deepEqual(
    { ...parseSourceRef("oci:./a:b"), scheme: undefined },
    { transport: "oci", value: "./a:b", text: "oci:./a:b", scheme: undefined },
  );
  assert.throws(() => parseSourceRef("dir:"), { message: "dir:: missing path" });
  assert.throws(() => parseSourceRef("docker:"), { message: "docker:: missing reference" });
});

test("sources refuse what they cannot open with one line naming the reference", async () => {
  await assert.rejects(openSource("docker:host/x", opts), {
    message: /^docker:host\/x: a registry reference is written docker:\/\//,
  });
  await assert.rejects(openSource("tar:/nonexistent.tar", opts), {
    message: "tar:/nonexistent.tar: no such file",
  });
  await assert.rejects(openSource("list:/nonexistent.list", opts), {
    message: "list:/nonexistent.list: no such file",
  });
});
