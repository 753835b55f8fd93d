// SIGINT, SIGTERM or SIGHUP in the middle of a pull leave no half-written (.tmp) blob in the
// cache (issue 7, item 15): the blob cache registers its temp files with src/util/temp-paths,
// which the CLI's signal handler removes.
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { startCli } from "./support/cli.js";
import { fakeImage, fakeRegistry, sha256 } from "./support/registry-server.js";

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-pull-signals-"));
});
after(() => rm(work, { recursive: true, force: true }));

async function blobNames(cache: string): Promise<string[]> {
  return readdir(join(cache, "blobs", "sha256")).catch(() => []);
}

for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
  ["SIGHUP", 129],
] as const) {
  it(`${signal} during a pull leaves no temp blob in the cache`, { timeout: 120_000 }, async () => {
    const img = await fakeImage();
    const digest = sha256(img.layer);
    // Sends the start of the layer, then holds the connection open.
    const fake = await fakeRegistry((req, res) => {
      if (!req.url?.endsWith(digest)) return void img.serve(req, res);
      res.writeHead(200, { "content-length": img.layer.length });
      res.write(img.layer.subarray(0, 20));
    });
    const xdg = await mkdtemp(join(work, "xdg-"));
    const cache = join(xdg, "slimroot");
    try {
      const cli = startCli(
        [
          "build",
          `docker://${fake.host}/demo/app:v1`,
          "--insecure",
          "-o",
          join(xdg, "out.cpio"),
          "--no-verify",
        ],
        { XDG_CACHE_HOME: xdg, SLIMROOT_CACHE: cache, SLIMROOT_STALL_TIMEOUT: "600" },
      );
      // Wait (bounded) until the layer's temp file exists, so the signal lands mid-download.
      let temp: string | undefined;
      for (let i = 0; i < 600 && !temp; i++) {
        temp = (await blobNames(cache)).find((n) => n.endsWith(".tmp"));
        if (!temp) await sleep(100);
      }
      assert.ok(temp, `no temp blob appeared (stderr: ${cli.stderr})`);
      cli.child.kill(signal);
      assert.equal(await cli.exited, code, cli.stderr);
      assert.deepEqual(
        (await blobNames(cache)).filter((n) => n.endsWith(".tmp")),
        [],
      );
    } finally {
      await fake.close();
    }
  });
}
