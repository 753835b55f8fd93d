/**
 * pullImage against Debian's real docker-registry (distribution v2), plus a tiny Node server
 * for what a well-behaved registry never does (500s, Bearer tokens, lying manifests).
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import {
  contents,
  fakeImage,
  fakeRegistry,
  makeLayer,
  pushBlob,
  pushManifest,
  pushTestImage,
  type RegistryServer,
  sha256,
  startRegistry,
} from "../../../test/support/registry-server.js";
import { EnvironmentError, UserError } from "../../util/errors.js";
import { pullImage } from "./client.js";

const AMD64 = { os: "linux", architecture: "amd64" };
const ARM64 = { os: "linux", architecture: "arm64" };
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";

/** Asserts a one-line error of the given class whose message starts with the reference. */
function oneLineError(cls: typeof UserError | typeof EnvironmentError, where: string, pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    assert.ok(err.message.startsWith(`${where}: `), err.message);
    assert.ok(!err.message.includes("\n"), err.message);
    assert.match(err.message, pattern);
    return true;
  };
}

let work: string;
let cacheDir: string;
const savedDockerConfig = process.env.DOCKER_CONFIG;

/** Points $DOCKER_CONFIG at a config.json with `auths` for `host`, or none. */
async function dockerLogin(host: string, user?: string, password?: string) {
  const auths = user ? { [host]: { auth: Buffer.from(`${user}:${password}`).toString("base64") } } : {};
  await writeFile(join(work, "docker", "config.json"), JSON.stringify({ auths }));
}

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-pull-"));
  cacheDir = join(work, "cache");
  // An empty docker config, so the developer's own ~/.docker/config.json never leaks in.
  process.env.DOCKER_CONFIG = join(work, "docker");
  await mkdir(process.env.DOCKER_CONFIG);
});
afterEach(async () => {
  if (savedDockerConfig === undefined) delete process.env.DOCKER_CONFIG;
  else process.env.DOCKER_CONFIG = savedDockerConfig;
  await rm(work, { recursive: true, force: true });
});

/** All files under the cache, so tests can check nothing half-written is left. */
async function cacheFiles(): Promise<string[]> {
  try {
    return (await readdir(join(cacheDir, "blobs", "sha256"))).sort();
  } catch {
    return [];
  }
}

describe("pullImage from docker-registry (anonymous)", () => {
  let reg: RegistryServer;
  before(async () => {
    reg = await startRegistry();
  });
  after(() => reg?.stop());

  it("pulls layers and config, verifies and caches them", async () => {
    const base = await makeLayer({ "etc/os-release": "ID=test\n", "bin/app": "v1" });
    const top = await makeLayer({ "bin/app": "v2" });
    const pushed = await pushTestImage(reg.url, "demo/app", "v1", [base, top], {
      config: {
        Entrypoint: ["/bin/app"],
        Cmd: ["--serve"],
        Env: ["PATH=/bin", "A=1"],
        WorkingDir: "/srv",
        User: "1000:1000",
        ExposedPorts: { "80/tcp": {}, "53/udp": {} },
      },
    });
    const ref = `docker://${reg.host}/demo/app:v1`;
    const seen: { done: number; total: number }[] = [];
    const image = await pullImage(ref, {
      insecure: true,
      platform: AMD64,
      cacheDir,
      progress: (p) => seen.push(p),
    });
    assert.equal(image.ref, ref);
    assert.equal(image.digest, pushed.digest);
    assert.deepEqual(image.platform, AMD64);
    assert.deepEqual(image.config, {
      entrypoint: ["/bin/app"],
      cmd: ["--serve"],
      env: ["PATH=/bin", "A=1"],
      workingDir: "/srv",
      user: "1000:1000",
      exposedPorts: ["53/udp", "80/tcp"],
    });
    assert.equal(image.layers.length, 2);
    assert.equal(image.layers[0]!.name, `${pushed.layers[0]!.digest} of ${ref}`);
    assert.deepEqual(await contents(image), { "etc/os-release": "ID=test\n", "bin/app": "v2" });

    const total = base.length + top.length;
    assert.deepEqual(seen.at(-1), { done: total, total });
    assert.deepEqual(seen[0], { done: 0, total });

    const hex = (d: string) => d.slice("sha256:".length);
    assert.deepEqual(
      await cacheFiles(),
      [pushed.config.digest, ...pushed.layers.map((l) => l.digest)].map(hex).sort(),
    );
    const cached = await readFile(join(cacheDir, "blobs", "sha256", hex(pushed.layers[1]!.digest)));
    assert.ok(cached.equals(top));
  });

  it("pulls by digest, and reuses cached blobs (re-checking their size)", async () => {
    const layer = await makeLayer({ hello: "world" });
    const pushed = await pushTestImage(reg.url, "demo/cached", "t", [layer]);
    const ref = `${reg.host}/demo/cached@${pushed.digest}`;
    const first = await pullImage(ref, { insecure: true, platform: AMD64, cacheDir });
    assert.equal(first.digest, pushed.digest);
    assert.equal(first.ref, `docker://${ref}`);

    // With the blob gone from the registry, only the cache can serve it.
    const del = await fetch(`${reg.url}/v2/demo/cached/blobs/${pushed.layers[0]!.digest}`, {
      method: "DELETE",
    });
    assert.equal(del.status, 202);
    const again = await pullImage(ref, { insecure: true, platform: AMD64, cacheDir });
    assert.deepEqual(await contents(again), { hello: "world" });

    // A cached blob of the wrong size is not trusted: it is fetched again (and now 404s).
    await truncate(join(cacheDir, "blobs", "sha256", pushed.layers[0]!.digest.slice(7)), 3);
    await assert.rejects(
      pullImage(ref, { insecure: true, platform: AMD64, cacheDir }),
      oneLineError(
        UserError,
        `docker://${ref}`,
        new RegExp(`cannot fetch blob ${pushed.layers[0]!.digest}: 404 Not Found`),
      ),
    );
  });

  it("hashes cached blobs before use: a changed one is fetched again, and one changed later fails as it is read", async () => {
    // An uncompressed layer, so that changed bytes still make a valid tar with other content.
    const layer = await makeLayer({ "bin/app": "good" }, { gzip: false });
    const pushed = await pushTestImage(reg.url, "demo/tamper", "t", [layer]);
    const ref = `docker://${reg.host}/demo/tamper:t`;
    const digest = pushed.layers[0]!.digest;
    const cached = join(cacheDir, "blobs", "sha256", digest.slice(7));
    await pullImage(ref, { insecure: true, platform: AMD64, cacheDir });
    const tamper = async () => {
      const bytes = await readFile(cached);
      const at = bytes.indexOf("good");
      assert.ok(at > 0);
      bytes.write("evil", at);
      await writeFile(cached, bytes);
    };

    await tamper();
    const again = await pullImage(ref, { insecure: true, platform: AMD64, cacheDir });
    assert.deepEqual(await contents(again), { "bin/app": "good" });
    assert.ok((await readFile(cached)).equals(layer), "the cache holds the registry's bytes again");

    await tamper();
    await assert.rejects(
      contents(again),
      oneLineError(
        UserError,
        `layer ${digest} of ${ref}`,
        new RegExp(`digest mismatch \\(expected ${digest}, `),
      ),
    );
  });

  it("selects each platform from an OCI index, and lists them for an unknown one", async () => {
    const amd = await pushTestImage(reg.url, "demo/multi", "amd", [await makeLayer({ arch: "amd64" })]);
    const arm = await pushTestImage(reg.url, "demo/multi", "arm", [await makeLayer({ arch: "arm64" })], {
      architecture: "arm64",
    });
    const index = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { mediaType: OCI_MANIFEST, digest: amd.digest, size: amd.manifest.length, platform: AMD64 },
        { mediaType: OCI_MANIFEST, digest: arm.digest, size: arm.manifest.length, platform: ARM64 },
      ],
    });
    await pushManifest(reg.url, "demo/multi", "latest", OCI_INDEX, index);
    const ref = `docker://${reg.host}/demo/multi`;

    const a = await pullImage(ref, { insecure: true, platform: AMD64, cacheDir });
    assert.equal(a.digest, amd.digest);
    assert.deepEqual(a.platform, AMD64);
    assert.deepEqual(await contents(a), { arch: "amd64" });

    const b = await pullImage(ref, { insecure: true, platform: { ...ARM64, variant: "v8" }, cacheDir });
    assert.equal(b.digest, arm.digest);
    assert.deepEqual(await contents(b), { arch: "arm64" });

    await assert.rejects(
      pullImage(ref, { insecure: true, platform: { os: "linux", architecture: "riscv64" }, cacheDir }),
      oneLineError(
        UserError,
        ref,
        /no image for platform linux\/riscv64; available: linux\/amd64, linux\/arm64$/,
      ),
    );
    // A single-platform image must match too.
    await assert.rejects(
      pullImage(`${reg.host}/demo/multi:arm`, { insecure: true, platform: AMD64, cacheDir }),
      oneLineError(UserError, `docker://${reg.host}/demo/multi:arm`, /available: linux\/arm64/),
    );
  });

  it("refuses a blob whose content does not match its digest, leaving nothing in the cache", async () => {
    const layer = await makeLayer({ file: "good content" });
    const pushed = await pushTestImage(reg.url, "demo/corrupt", "t", [layer]);
    const digest = pushed.layers[0]!.digest;
    const hex = digest.slice(7);
    const data = join(reg.storageDir, "docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex, "data");
    const bad = Buffer.from(layer);
    bad[bad.length - 5]! ^= 0xff;
    await writeFile(data, bad);

    const ref = `docker://${reg.host}/demo/corrupt:t`;
    await assert.rejects(
      pullImage(ref, { insecure: true, platform: AMD64, cacheDir }),
      oneLineError(UserError, ref, new RegExp(`blob ${digest}: digest mismatch.*refusing it`)),
    );
    assert.deepEqual(await cacheFiles(), [pushed.config.digest.slice(7)]);
  });

  it("gives one-line errors naming the reference for 404s", async () => {
    await pushTestImage(reg.url, "demo/exists", "t", [await makeLayer({ a: "b" })]);
    const tagRef = `docker://${reg.host}/demo/exists:nope`;
    await assert.rejects(
      pullImage(tagRef, { insecure: true, platform: AMD64, cacheDir }),
      oneLineError(UserError, tagRef, /cannot fetch manifest nope: 404 Not Found: manifest unknown/),
    );
    const repoRef = `docker://${reg.host}/no/such/repo`;
    await assert.rejects(
      pullImage(repoRef, { insecure: true, platform: AMD64, cacheDir }),
      oneLineError(UserError, repoRef, /404 Not Found/),
    );
  });

  it("fails clearly on network and TLS problems", async () => {
    // https to a plain-http registry: hint at --insecure.
    const ref = `docker://${reg.host}/demo/app:v1`;
    await assert.rejects(
      pullImage(ref, { platform: AMD64, cacheDir }),
      oneLineError(EnvironmentError, ref, /TLS error.*use --insecure/),
    );
    const closed = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const port = (s.address() as AddressInfo).port;
        s.close(() => resolve(port));
      });
    });
    const refused = `docker://127.0.0.1:${closed}/x`;
    await assert.rejects(
      pullImage(refused, { insecure: true, platform: AMD64, cacheDir }),
      oneLineError(EnvironmentError, refused, /cannot connect to 127\.0\.0\.1:\d+ \(connection refused\)/),
    );
  });
});

describe("pullImage from docker-registry with htpasswd (Basic) auth", () => {
  let reg: RegistryServer;
  let ref: string;
  before(async () => {
    reg = await startRegistry({ users: { alice: "s3cret" } });
    const auth = { username: "alice", password: "s3cret" };
    await pushTestImage(reg.url, "nginx", "latest", [await makeLayer({ index: "hi" })], { auth });
    ref = `docker://${reg.host}/nginx:latest`;
  });
  after(() => reg?.stop());

  it("pulls with the password from ~/.docker/config.json", async () => {
    await dockerLogin(reg.host, "alice", "s3cret");
    const image = await pullImage(ref, { insecure: true, platform: AMD64, cacheDir });
    assert.deepEqual(await contents(image), { index: "hi" });
  });

  it("says authentication failed for a wrong password", async () => {
    await dockerLogin(reg.host, "alice", "wrong");
    await assert.rejects(pullImage(ref, { insecure: true, platform: AMD64, cacheDir }), (err: unknown) => {
      assert.ok(err instanceof UserError);
      assert.equal(err.message, `${ref}: authentication failed (401 Unauthorized) for user alice`);
      return true;
    });
  });

  it("says authentication is required without credentials", async () => {
    await dockerLogin(reg.host);
    await assert.rejects(
      pullImage(ref, { insecure: true, platform: AMD64, cacheDir }),
      oneLineError(UserError, ref, /authentication required \(401 Unauthorized\); no credentials for/),
    );
  });
});

describe("pullImage against a fake registry", () => {
  it("turns a 500 into a one-line EnvironmentError naming the reference", async () => {
    const fake = await fakeRegistry((_req, res) => {
      res.writeHead(500, { "content-type": "text/html" }).end("<html>\n<h1>oops</h1>\n</html>");
    });
    try {
      const ref = `docker://${fake.host}/demo/app:v1`;
      await assert.rejects(pullImage(ref, { insecure: true, platform: AMD64, cacheDir }), (err: unknown) => {
        assert.ok(err instanceof EnvironmentError);
        assert.equal(err.message, `${ref}: cannot fetch manifest v1: 500 Internal Server Error`);
        return true;
      });
    } finally {
      await fake.close();
    }
  });

  it("does the Bearer token flow, caching the token, and reports a bad password", async () => {
    const img = await fakeImage();
    let tokens = 0;
    const fake = await fakeRegistry((req, res, host) => {
      const url = new URL(req.url ?? "/", `http://${host}`);
      if (url.pathname === "/token") {
        const ok = req.headers.authorization === `Basic ${Buffer.from("alice:pw").toString("base64")}`;
        assert.equal(url.searchParams.get("service"), "fake-registry");
        assert.equal(url.searchParams.get("scope"), "repository:demo/app:pull");
        if (!ok) return void res.writeHead(401).end();
        tokens++;
        res.writeHead(200, { "content-type": "application/json" });
        return void res.end(JSON.stringify({ token: "tok-123", expires_in: 300 }));
      }
      if (req.headers.authorization !== "Bearer tok-123") {
        res.writeHead(401, {
          "www-authenticate": `Bearer realm="http://${host}/token",service="fake-registry",scope="repository:demo/app:pull"`,
        });
        return void res.end();
      }
      if (!img.serve(req, res)) res.writeHead(404).end();
    });
    try {
      const ref = `docker://${fake.host}/demo/app:v1`;
      await dockerLogin(fake.host, "alice", "pw");
      const image = await pullImage(ref, { insecure: true, platform: AMD64, cacheDir });
      assert.deepEqual(image.config, { cmd: ["sh"] });
      assert.deepEqual(await contents(image), { fake: "yes" });
      assert.equal(tokens, 1, "one token for the whole pull");

      await dockerLogin(fake.host, "alice", "nope");
      await assert.rejects(pullImage(ref, { insecure: true, platform: AMD64, cacheDir }), (err: unknown) => {
        assert.ok(err instanceof UserError);
        assert.equal(err.message, `${ref}: authentication failed (401 Unauthorized) for user alice`);
        return true;
      });
    } finally {
      await fake.close();
    }
  });

  it("says access denied when the token does not grant the repository", async () => {
    const fake = await fakeRegistry((req, res, host) => {
      if (req.url?.startsWith("/token")) return void res.writeHead(200).end('{"token":"anon"}');
      const error = req.headers.authorization ? ',error="insufficient_scope"' : "";
      res
        .writeHead(401, { "www-authenticate": `Bearer realm="http://${host}/token",service="s"${error}` })
        .end();
    });
    try {
      const ref = `docker://${fake.host}/private/thing`;
      await assert.rejects(
        pullImage(ref, { insecure: true, platform: AMD64, cacheDir }),
        oneLineError(UserError, ref, /access denied \(401 Unauthorized\): .*anonymous users may not pull it/),
      );
    } finally {
      await fake.close();
    }
  });

  it("refuses a manifest that does not match the digest it was pulled by", async () => {
    const img = await fakeImage();
    const wanted = `sha256:${"0".repeat(64)}`;
    const fake = await fakeRegistry((req, res) => {
      if (req.url === `/v2/demo/app/manifests/${wanted}`) {
        return void res.writeHead(200, { "content-type": OCI_MANIFEST }).end(img.manifest);
      }
      if (!img.serve(req, res)) res.writeHead(404).end();
    });
    try {
      const ref = `docker://${fake.host}/demo/app@${wanted}`;
      await assert.rejects(
        pullImage(ref, { insecure: true, platform: AMD64, cacheDir }),
        oneLineError(UserError, ref, new RegExp(`manifest ${wanted}: digest mismatch`)),
      );
    } finally {
      await fake.close();
    }
  });

  it("stops reading a blob that is larger than the manifest says", async () => {
    const img = await fakeImage();
    const fake = await fakeRegistry((req, res) => {
      if (req.url === `/v2/demo/app/blobs/${sha256(img.layer)}`) {
        return void res.writeHead(200).end(Buffer.concat([img.layer, Buffer.alloc(1 << 20)]));
      }
      if (!img.serve(req, res)) res.writeHead(404).end();
    });
    try {
      const ref = `docker://${fake.host}/demo/app:v1`;
      await assert.rejects(
        pullImage(ref, { insecure: true, platform: AMD64, cacheDir }),
        oneLineError(UserError, ref, /is larger than the \d+ bytes the manifest says/),
      );
      // Only the (verified) config made it into the cache; no temp files linger.
      const left = await readdir(join(cacheDir, "blobs", "sha256"));
      assert.equal(left.length, 1);
      assert.equal((await stat(join(cacheDir, "blobs", "sha256", left[0]!))).isFile(), true);
    } finally {
      await fake.close();
    }
  });

  it("pushBlob helper digests match what the registry stores", async () => {
    // Guards the test support itself: a blob pushed by digest reads back identical.
    const reg = await startRegistry();
    try {
      const data = Buffer.from("support check");
      const d = await pushBlob(reg.url, "x/y", data);
      const res = await fetch(`${reg.url}/v2/x/y/blobs/${d.digest}`);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(data));
    } finally {
      await reg.stop();
    }
  });
});
