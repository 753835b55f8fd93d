import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import type { Artifact } from "../artifact/identify.js";
import { COMPRESSIONS } from "../compress/compress.js";
import { digestOf } from "../image/digest.js";
import { createdAt, formatOfMediaType, imageManifest, layerMediaType } from "./form.js";

const initramfs = (compression: (typeof COMPRESSIONS)[number]): Artifact => ({
  kind: "initramfs",
  path: "a.cpio",
  bytes: 1,
  compression,
});

test("every layer media type names its format back, and nothing else reads as slimroot's", () => {
  for (const c of COMPRESSIONS) assert.equal(formatOfMediaType(layerMediaType(initramfs(c))), "initramfs");
  for (const format of ["ext4", "erofs", "squashfs"] as const) {
    const a = {
      kind: "disk",
      path: "d",
      bytes: 1,
      identity: { format, fstype: format, offset: 0, id: Buffer.alloc(0) },
    };
    assert.equal(formatOfMediaType(layerMediaType(a as Artifact)), format);
  }
  for (const other of [
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.slimroot.initramfs.v2",
    "application/vnd.slimroot.config.v1+json",
    "application/vnd.erofs.layer.v1",
  ])
    assert.equal(formatOfMediaType(other), undefined, other);
  assert.throws(
    () => layerMediaType({ kind: "list", path: "dir", bytes: 1, entries: 1 }),
    /push the archive/,
  );
});

test("the manifest is a function of its inputs only: same inputs, same digest; created from the epoch", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 4_000_000_000 }),
      fc.stringMatching(/^[a-z0-9._-]{1,20}$/),
      (epoch, name) => {
        const blob = { mediaType: "x", digest: digestOf(name), size: name.length };
        const a = imageManifest(`/some/dir/${name}`, blob, blob, epoch);
        const b = imageManifest(`/other/${name}`, blob, blob, epoch);
        assert.equal(digestOf(a), digestOf(b), "the directory does not matter, only the name");
        const doc = JSON.parse(a.toString());
        assert.equal(doc.annotations["org.opencontainers.image.created"], createdAt(epoch));
        assert.equal(new Date(createdAt(epoch)).getTime(), epoch * 1000);
        assert.equal(doc.annotations["org.opencontainers.image.title"], name);
      },
    ),
  );
});

test("a layered initramfs: a layer per part, in order, titled FILE.N and named by its part", () => {
  const config = { mediaType: "c", digest: digestOf("c"), size: 1 };
  const parts = ["layer 0", "layer 1", "slimroot"].map((part, i) => ({
    mediaType: "application/vnd.slimroot.initramfs.v1+gzip",
    digest: digestOf(part),
    size: i + 1,
    part,
  }));
  const doc = JSON.parse(imageManifest("/x/app.cpio.gz", config, parts, 0).toString());
  assert.deepEqual(
    doc.layers.map((l: { size: number; annotations: Record<string, string> }) => [l.size, l.annotations]),
    parts.map((p, i) => [
      p.size,
      { "org.opencontainers.image.title": `app.cpio.gz.${i}`, "vnd.slimroot.initramfs.part": p.part },
    ]),
  );
  assert.equal(doc.layers[0].digest, digestOf("layer 0"));
  assert.equal("part" in doc.layers[0], false, "the part's name is an annotation, not a descriptor field");
});
