// Malformed image documents (issue 7, item 16): every JSON document read from an image
// source is checked against its schema (src/image/schemas.ts), so wrong shapes and types
// give one line naming the file and the field, exit 1, never a raw JavaScript error.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runCli } from "./support/cli.js";
import { tarOf, writeOciLayout } from "./support/layers.js";

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-documents-"));
});
after(() => rm(work, { recursive: true, force: true }));

const sha256 = (data: string) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

/** Builds `source` and expects exit 1 with exactly one stderr line matching `pattern`. */
async function expectRefused(source: string, pattern: RegExp) {
  const r = await runCli(["build", source, "-o", join(work, "out.cpio"), "--entrypoint", "/bin/true"]);
  const lines = r.stderr.trim().split("\n");
  assert.equal(r.code, 1, `exit code (stderr: ${r.stderr})`);
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.doesNotMatch(lines[0]!, /Cannot read|undefined|null \(reading/);
  assert.match(lines[0]!, pattern);
}

let n = 0;
type Json = Record<string, unknown> | unknown[] | null | string | number;
// biome-ignore lint/suspicious/noExplicitAny: tests write any shape on purpose
type Doc = any;
interface Edits {
  config?: (config: Doc) => Json | undefined;
  manifest?: (manifest: Doc) => Json | undefined;
  index?: (index: Doc) => Json | undefined;
}

/**
 * A good OCI layout whose documents `edit` then changes: config and manifest are rewritten
 * as blobs under their new digests (so the digest checks pass), index.json last. An edit
 * returns a replacement document, or undefined to keep the one it changed in place.
 */
async function layout(edit: Edits) {
  const dir = join(work, `layout-${n++}`);
  await writeOciLayout(dir, { layers: [await tarOf([{ name: "a", body: "x" }])] });
  const blob = (digest: string) => join(dir, "blobs", "sha256", digest.slice(7));
  const put = async (doc: unknown) => {
    const text = JSON.stringify(doc);
    await writeFile(blob(sha256(text)), text);
    return { digest: sha256(text), size: Buffer.byteLength(text) };
  };
  const apply = (doc: Doc, f?: (d: Doc) => Json | undefined) => {
    const changed = f?.(doc);
    return changed === undefined ? doc : changed;
  };
  const index = JSON.parse(await readFile(join(dir, "index.json"), "utf8"));
  let manifest = JSON.parse(await readFile(blob(index.manifests[0].digest), "utf8"));
  const config = apply(JSON.parse(await readFile(blob(manifest.config.digest), "utf8")), edit.config);
  manifest.config = { ...manifest.config, ...(await put(config)) };
  manifest = apply(manifest, edit.manifest);
  index.manifests[0] = { ...index.manifests[0], ...(await put(manifest)) };
  await writeFile(join(dir, "index.json"), JSON.stringify(apply(index, edit.index)));
  return `oci:${dir}`;
}

async function archive(manifestJson: unknown) {
  const path = join(work, `archive-${n++}.tar`);
  const config = JSON.stringify({ os: "linux", architecture: "amd64", config: {} });
  await writeFile(
    path,
    await tarOf([
      { name: "manifest.json", body: JSON.stringify(manifestJson) },
      { name: "config.json", body: config },
      { name: "layer.tar", body: await tarOf([{ name: "a", body: "x" }]) },
    ]),
  );
  return `docker-archive:${path}`;
}

describe("OCI layout documents of the wrong shape", () => {
  it("index.json of null, or with manifests that are not descriptors", async () => {
    await expectRefused(await layout({ index: () => null }), /index\.json: the document must be object$/);
    await expectRefused(
      await layout({ index: (i) => ({ ...i, manifests: [null] }) }),
      /index\.json: manifests\[0\] must be object$/,
    );
    await expectRefused(
      await layout({ index: (i) => ({ ...i, manifests: "x" }) }),
      /index\.json: manifests must be array$/,
    );
    await expectRefused(
      await layout({
        index: (i) => ({ manifests: [{ ...i.manifests[0], digest: "sha256:../../etc/passwd" }] }),
      }),
      /index\.json: manifests\[0\]\.digest is not a valid digest$/,
    );
  });

  it("a manifest with layers [null], a layer without a size, or no config", async () => {
    await expectRefused(
      await layout({ manifest: (m) => ({ ...m, layers: [null] }) }),
      /manifest sha256:[0-9a-f]{64}: layers\[0\] must be object$/,
    );
    await expectRefused(
      await layout({ manifest: (m) => ({ ...m, layers: [{ ...m.layers[0], size: undefined }] }) }),
      /manifest sha256:[0-9a-f]{64}: layers\[0\] has no "size"$/,
    );
    await expectRefused(
      await layout({ manifest: (m) => ({ ...m, layers: [{ ...m.layers[0], size: "12" }] }) }),
      /layers\[0\]\.size must be integer$/,
    );
    await expectRefused(
      await layout({ manifest: (m) => ({ ...m, config: undefined }) }),
      /the document has no "config"$/,
    );
  });

  it("a config with wrong types", async () => {
    await expectRefused(await layout({ config: () => [] }), /config: the document must be object$/);
    await expectRefused(
      await layout({ config: (c) => ({ ...c, config: { Env: ["A=1", 2] } }) }),
      /config: config\.Env\[1\] must be string$/,
    );
    await expectRefused(
      await layout({ config: (c) => ({ ...c, config: { Cmd: [{}] } }) }),
      /config: config\.Cmd\[0\] must be string$/,
    );
    await expectRefused(await layout({ config: (c) => ({ ...c, os: 7 }) }), /config: os must be string$/);
  });
});

describe("docker-archive manifest.json of the wrong shape", () => {
  it("not an array, empty, [null], Layers as a string, RepoTags of numbers, no JSON", async () => {
    await expectRefused(
      await archive({ Config: "config.json" }),
      /manifest\.json: the document must be array$/,
    );
    await expectRefused(await archive([]), /manifest\.json: the document is empty$/);
    await expectRefused(await archive([null]), /manifest\.json: \[0\] must be object$/);
    await expectRefused(
      await archive([{ Config: "config.json", Layers: "layer.tar" }]),
      /manifest\.json: \[0\]\.Layers must be array$/,
    );
    await expectRefused(
      await archive([{ Config: "config.json", Layers: ["layer.tar"], RepoTags: [1] }]),
      /manifest\.json: \[0\]\.RepoTags\[0\] must be string$/,
    );
    await expectRefused(await archive([{ Layers: [] }]), /manifest\.json: \[0\] has no "Config"$/);
  });
});
