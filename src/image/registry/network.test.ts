/**
 * The registry client against servers that misbehave on the wire: stalls, drips, missing
 * sizes (issue 7, item 14), 429s, redirects to other hosts and the OAuth2 refresh grant
 * (item 27). Timeouts are shortened through SLIMROOT_STALL_TIMEOUT and SLIMROOT_MIN_RATE.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { contents, fakeImage, fakeRegistry, sha256 } from "../../../test/support/registry-server.js";
import { EnvironmentError, UserError } from "../../util/errors.js";
import { pullImage } from "./client.js";

const AMD64 = { os: "linux", architecture: "amd64" };
/** A test that would hang without the fix fails at this bound instead. */
const BOUND = { timeout: 60_000 };

let work: string;
let cacheDir: string;
const saved = { ...process.env };
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-net-"));
  cacheDir = join(work, "cache");
  process.env.DOCKER_CONFIG = join(work, "docker");
  await mkdir(process.env.DOCKER_CONFIG);
  process.env.SLIMROOT_STALL_TIMEOUT = "1";
});
afterEach(async () => {
  for (const k of ["DOCKER_CONFIG", "SLIMROOT_STALL_TIMEOUT", "SLIMROOT_MIN_RATE"]) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  await rm(work, { recursive: true, force: true });
});

function oneLine(cls: typeof UserError | typeof EnvironmentError, text: string | RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    assert.ok(!err.message.includes("\n"), err.message);
    if (typeof text === "string") assert.equal(err.message, text);
    else assert.match(err.message, text);
    return true;
  };
}

/** Names in the cache's blob directory (to check that no .tmp file is left). */
async function cacheNames(): Promise<string[]> {
  return readdir(join(cacheDir, "blobs", "sha256")).catch(() => []);
}

type Handler = (req: IncomingMessage, res: ServerResponse, host: string) => void;

/** Runs `fn` against a fake registry, closing it (and any drip timers) afterwards. */
async function withFake(handle: Handler, fn: (host: string, log: string[]) => Promise<void>) {
  const fake = await fakeRegistry(handle);
  try {
    await fn(fake.host, fake.log);
  } finally {
    await fake.close();
  }
}

describe("every request is bounded in time", () => {
  it("a manifest that never comes fails after the stall timeout, naming what stalled", BOUND, async () => {
    await withFake(
      () => {}, // never answers
      async (host) => {
        const ref = `docker://${host}/demo/app:v1`;
        await assert.rejects(
          pullImage(ref, { insecure: true, platform: AMD64, cacheDir }),
          oneLine(
            EnvironmentError,
            `${ref}: manifest v1: no answer from ${host} for 1 s (SLIMROOT_STALL_TIMEOUT)`,
          ),
        );
      },
    );
  });

  it("a blob that stalls mid-body fails and leaves no temp file", BOUND, async () => {
    process.env.SLIMROOT_MIN_RATE = "1"; // so that the stall, not the overall deadline, ends it
    const img = await fakeImage();
    const digest = sha256(img.layer);
    await withFake(
      (req, res) => {
        if (req.url?.endsWith(digest)) {
          res.writeHead(200, { "content-length": img.layer.length });
          return void res.write(img.layer.subarray(0, 10)); // and then nothing
        }
        img.serve(req, res);
      },
      async (host) => {
        const ref = `docker://${host}/demo/app:v1`;
        await assert.rejects(
          pullImage(ref, { insecure: true, platform: AMD64, cacheDir }),
          oneLine(
            EnvironmentError,
            `${ref}: blob ${digest} stalled: no data from ${host} for 1 s after 10 bytes (SLIMROOT_STALL_TIMEOUT)`,
          ),
        );
        assert.deepEqual(
          (await cacheNames()).filter((n) => n.endsWith(".tmp")),
          [],
        );
      },
    );
  });

  it("a token server that does not answer fails the same way", BOUND, async () => {
    await withFake(
      (req, res, host) => {
        if (req.url?.startsWith("/token")) return; // never answers
        res.writeHead(401, { "www-authenticate": `Bearer realm="http://${host}/token",service="s"` }).end();
      },
      async (host) => {
        const ref = `docker://${host}/demo/app:v1`;
        await assert.rejects(
          pullImage(ref, { insecure: true, platform: AMD64, cacheDir }),
          oneLine(
            EnvironmentError,
            `${ref}: token from ${host}: no answer from ${host} for 1 s (SLIMROOT_STALL_TIMEOUT)`,
          ),
        );
      },
    );
  });

  it("a blob that drips a byte at a time fails once below the minimum rate", BOUND, async () => {
    process.env.SLIMROOT_MIN_RATE = "50";
    const img = await fakeImage();
    const digest = sha256(img.layer);
    await withFake(
      (req, res) => {
        if (!req.url?.endsWith(digest)) return void img.serve(req, res);
        res.writeHead(200, { "content-length": img.layer.length });
        // A byte every 0.2 s never stalls for 1 s, but is far below 50 bytes/s.
        let i = 0;
        const timer = setInterval(() => {
          if (i < img.layer.length) res.write(img.layer.subarray(i, ++i));
        }, 200);
        res.on("close", () => clearInterval(timer));
      },
      async (host) => {
        const ref = `docker://${host}/demo/app:v1`;
        await assert.rejects(
          pullImage(ref, { insecure: true, platform: AMD64, cacheDir }),
          oneLine(
            EnvironmentError,
            new RegExp(
              `^${ref}: blob ${digest} too slow: \\d+ bytes in [\\d.]+ s from ${host}, below SLIMROOT_MIN_RATE \\(50 bytes/s\\)$`,
            ),
          ),
        );
      },
    );
  });

  it("a layer descriptor without a size is refused before anything is downloaded", BOUND, async () => {
    const img = await fakeImage({ editManifest: (m) => delete m.layers[0]!.size });
    await withFake(
      (req, res) => img.serve(req, res),
      async (host, log) => {
        const ref = `docker://${host}/demo/app:v1`;
        await assert.rejects(
          pullImage(ref, { insecure: true, platform: AMD64, cacheDir }),
          oneLine(UserError, `${ref}: manifest v1: layers[0] has no "size"`),
        );
        assert.deepEqual(
          log.filter((l) => l.includes("/blobs/")),
          [],
        );
      },
    );
  });
});

describe("429 Too Many Requests", () => {
  it("is retried after the Retry-After the registry asks for", BOUND, async () => {
    const img = await fakeImage();
    let manifestRequests = 0;
    let refusals = 2;
    // Like a registry that enforces its rate limit: a retry before Retry-After has passed is refused for good.
    let notBefore = 0;
    await withFake(
      (req, res) => {
        if (req.url?.includes("/manifests/")) {
          manifestRequests++;
          if (Date.now() < notBefore) return void res.writeHead(403).end();
          if (refusals-- > 0) {
            notBefore = Date.now() + 1000;
            return void res.writeHead(429, { "retry-after": "1" }).end();
          }
        }
        img.serve(req, res);
      },
      async (host) => {
        const image = await pullImage(`docker://${host}/demo/app:v1`, {
          insecure: true,
          platform: AMD64,
          cacheDir,
        });
        assert.deepEqual(await contents(image), { fake: "yes" });
        assert.equal(manifestRequests, 3);
      },
    );
  });

  it(
    "gives up after a bounded number of retries, or at once when asked to wait too long",
    BOUND,
    async () => {
      let wait = "0";
      await withFake(
        (_req, res) => void res.writeHead(429, { "retry-after": wait }).end(),
        async (host, log) => {
          const ref = `docker://${host}/demo/app:v1`;
          await assert.rejects(
            pullImage(ref, { insecure: true, platform: AMD64, cacheDir }),
            oneLine(
              EnvironmentError,
              `${ref}: cannot fetch manifest v1: 429 Too Many Requests (retry after 0 s)`,
            ),
          );
          assert.equal(log.length, 4, "one request and three retries");
          wait = "3600";
          log.length = 0;
          await assert.rejects(
            pullImage(ref, { insecure: true, platform: AMD64, cacheDir }),
            oneLine(
              EnvironmentError,
              `${ref}: cannot fetch manifest v1: 429 Too Many Requests (retry after 3600 s)`,
            ),
          );
          assert.equal(log.length, 1);
        },
      );
    },
  );
});

describe("redirects and the token refresh grant", () => {
  it("follows a blob redirect to another host without the Authorization header", BOUND, async () => {
    const img = await fakeImage();
    const digest = sha256(img.layer);
    const cdnAuth: (string | undefined)[] = [];
    const cdn = await fakeRegistry((req, res) => {
      cdnAuth.push(req.headers.authorization);
      res.writeHead(200).end(img.layer);
    });
    const cdnPort = cdn.host.split(":")[1];
    const registryAuth: (string | undefined)[] = [];
    try {
      await withFake(
        (req, res, host) => {
          if (req.url?.startsWith("/token")) return void res.writeHead(200).end('{"token":"tok"}');
          if (req.headers.authorization !== "Bearer tok") {
            return void res
              .writeHead(401, { "www-authenticate": `Bearer realm="http://${host}/token",service="s"` })
              .end();
          }
          registryAuth.push(req.headers.authorization);
          // "localhost" is another host than the registry's 127.0.0.1.
          if (req.url?.endsWith(digest))
            return void res.writeHead(307, { location: `http://localhost:${cdnPort}/blob?sig=1` }).end();
          img.serve(req, res);
        },
        async (host) => {
          const image = await pullImage(`docker://${host}/demo/app:v1`, {
            insecure: true,
            platform: AMD64,
            cacheDir,
          });
          assert.deepEqual(await contents(image), { fake: "yes" });
          assert.deepEqual(cdnAuth, [undefined], "the token stayed with the registry");
          assert.ok(registryAuth.includes("Bearer tok"));
        },
      );
    } finally {
      await cdn.close();
    }
  });

  it("uses an identity token from docker login with the OAuth2 refresh grant", BOUND, async () => {
    const img = await fakeImage();
    const forms: Record<string, string>[] = [];
    await withFake(
      (req, res, host) => {
        if (req.url === "/token" && req.method === "POST") {
          let body = "";
          req.on("data", (d: Buffer) => {
            body += d;
          });
          req.on("end", () => {
            forms.push(Object.fromEntries(new URLSearchParams(body)));
            res
              .writeHead(200, { "content-type": "application/json" })
              .end('{"access_token":"acc","expires_in":300}');
          });
          return;
        }
        if (req.headers.authorization !== "Bearer acc") {
          return void res
            .writeHead(401, {
              "www-authenticate": `Bearer realm="http://${host}/token",service="reg",scope="repository:demo/app:pull"`,
            })
            .end();
        }
        img.serve(req, res);
      },
      async (host) => {
        await writeFile(
          join(work, "docker", "config.json"),
          JSON.stringify({
            auths: { [host]: { auth: Buffer.from(":").toString("base64"), identitytoken: "refresh-me" } },
          }),
        );
        const image = await pullImage(`docker://${host}/demo/app:v1`, {
          insecure: true,
          platform: AMD64,
          cacheDir,
        });
        assert.deepEqual(await contents(image), { fake: "yes" });
        assert.deepEqual(forms, [
          {
            grant_type: "refresh_token",
            refresh_token: "refresh-me",
            client_id: "slimroot",
            service: "reg",
            scope: "repository:demo/app:pull",
          },
        ]);
      },
    );
  });
});
