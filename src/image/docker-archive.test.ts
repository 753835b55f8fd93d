// docker-archive tarballs holding several images (what `docker save a b` writes), and
// skopeo's PATH:NAME:TAG selection among them (issue 7, item 27).
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { tarOf } from "../../test/support/layers.js";
import { contents } from "../../test/support/registry-server.js";
import { UserError } from "../util/errors.js";
import { openDockerArchive } from "./docker-archive.js";

let work: string;
let path: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-archive-"));
  path = join(work, "two images.tar");
  const config = (cmd: string) =>
    JSON.stringify({ os: "linux", architecture: "amd64", config: { Cmd: [cmd] } });
  await writeFile(
    path,
    await tarOf([
      {
        name: "manifest.json",
        body: JSON.stringify([
          { Config: "one.json", RepoTags: ["app:one"], Layers: ["base.tar", "one.tar"] },
          {
            Config: "two.json",
            RepoTags: ["app:two", "registry.example:5000/other:x"],
            Layers: ["base.tar", "two.tar"],
          },
        ]),
      },
      { name: "one.json", body: config("/one") },
      { name: "two.json", body: config("/two") },
      { name: "base.tar", body: await tarOf([{ name: "base", body: "shared" }]) },
      { name: "one.tar", body: await tarOf([{ name: "which", body: "one" }]) },
      { name: "two.tar", body: await tarOf([{ name: "which", body: "two" }]) },
    ]),
  );
});
after(() => rm(work, { recursive: true, force: true }));

describe("docker-archive with several images", () => {
  it("picks the image named by :NAME:TAG, including a tag with a registry port", async () => {
    const one = await openDockerArchive(`${path}:app:one`);
    assert.deepEqual(one.config.cmd, ["/one"]);
    assert.deepEqual(await contents(one), { base: "shared", which: "one" });
    const two = await openDockerArchive(`${path}:registry.example:5000/other:x`);
    assert.deepEqual(two.config.cmd, ["/two"]);
    assert.deepEqual(await contents(two), { base: "shared", which: "two" });
    assert.equal(two.layers[1]!.name, `two.tar of docker-archive:${path}:registry.example:5000/other:x`);
  });

  it("asks for a choice without one, and lists the tags for an unknown one", async () => {
    await assert.rejects(openDockerArchive(path), (err: unknown) => {
      assert.ok(err instanceof UserError);
      assert.equal(
        err.message,
        `docker-archive:${path}: the archive holds 2 images; pick one with :NAME:TAG (app:one, app:two, registry.example:5000/other:x)`,
      );
      return true;
    });
    await assert.rejects(openDockerArchive(`${path}:app:three`), (err: unknown) => {
      assert.ok(err instanceof UserError);
      assert.equal(
        err.message,
        `docker-archive:${path}:app:three: no image tagged app:three; tags: app:one, app:two, registry.example:5000/other:x`,
      );
      return true;
    });
  });
});
