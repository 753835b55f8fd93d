/**
 * Where the user's registry credentials may travel (issue 7, item 2): over https, also to a
 * token realm on another host (as docker does); over plain http only to a loopback registry
 * with --insecure; never from an https registry down to an http realm. The https cases run
 * the pull in a child process that trusts a test CA made with openssl.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { REPO } from "../../../test/support/cli.js";
import {
  fakeImage,
  fakeRegistry,
  makeTestCertificates,
  outsideAddress,
} from "../../../test/support/registry-server.js";
import { UserError } from "../../util/errors.js";
import { pullImage } from "./client.js";

const CHILD = join(REPO, "test", "support", "pull-child.ts");
const BASIC = `Basic ${Buffer.from("alice:pw").toString("base64")}`;
const AMD64 = { os: "linux", architecture: "amd64" };

let work: string;
let certs: ReturnType<typeof makeTestCertificates>;

/** DOCKER_CONFIG with alice's password for `host`. */
async function loginFor(host: string): Promise<string> {
  const dir = await mkdtemp(join(work, "docker-"));
  await writeFile(
    join(dir, "config.json"),
    JSON.stringify({ auths: { [host]: { auth: Buffer.from("alice:pw").toString("base64") } } }),
  );
  return dir;
}

/** Runs test/support/pull-child.ts trusting the test CA; resolves with its exit code and output. */
function pullInChild(ref: string, dockerConfig: string, args: string[] = []) {
  const child = spawn(process.execPath, ["--import", "tsx", CHILD, ref, ...args], {
    cwd: REPO,
    env: {
      ...process.env,
      NODE_EXTRA_CA_CERTS: certs.caFile,
      DOCKER_CONFIG: dockerConfig,
      SLIMROOT_TEST_CACHE: join(work, "cache"),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d;
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d;
  });
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** A registry that wants a Bearer token from `realm` and serves the fake image to it. */
async function tokenRegistry(realm: (host: string) => string, opts: Parameters<typeof fakeRegistry>[1] = {}) {
  const img = await fakeImage();
  const tokenAuth: (string | undefined)[] = [];
  const fake = await fakeRegistry((req: IncomingMessage, res, host) => {
    if (req.url?.startsWith("/token")) {
      tokenAuth.push(req.headers.authorization);
      return void res.writeHead(200, { "content-type": "application/json" }).end('{"token":"tok"}');
    }
    if (req.headers.authorization !== "Bearer tok") {
      return void res
        .writeHead(401, { "www-authenticate": `Bearer realm="${realm(host)}",service="s"` })
        .end();
    }
    if (!img.serve(req, res)) res.writeHead(404).end();
  }, opts);
  return { ...fake, tokenAuth };
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-creds-"));
  await mkdir(join(work, "cache"));
  certs = makeTestCertificates(work);
});
after(() => rm(work, { recursive: true, force: true }));

describe("credentials over https", () => {
  it("sends them to a token realm on another host over https (as docker does)", async () => {
    // 127.0.0.1 and localhost are different hosts to a URL: the realm is elsewhere.
    const reg = await tokenRegistry((host) => `https://localhost:${host.split(":")[1]}/token`, {
      tls: certs,
    });
    try {
      const r = await pullInChild(`docker://${reg.host}/demo/app:v1`, await loginFor(reg.host));
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(reg.tokenAuth, [BASIC]);
    } finally {
      await reg.close();
    }
  });

  it("refuses a token realm that downgrades an https registry to plain http, sending nothing", async () => {
    const plain = await fakeRegistry((_req, res) => void res.writeHead(200).end('{"token":"tok"}'));
    const reg = await tokenRegistry(() => `http://${plain.host}/token`, { tls: certs });
    try {
      const ref = `docker://${reg.host}/demo/app:v1`;
      const r = await pullInChild(ref, await loginFor(reg.host));
      assert.equal(r.code, 1, r.stderr);
      assert.equal(
        r.stderr,
        `${ref}: refusing token realm http://${plain.host}: plain http from an https registry (a downgrade)\n`,
      );
      assert.deepEqual(plain.log, [], "the http realm never heard from us");
    } finally {
      await reg.close();
      await plain.close();
    }
  });
});

describe("credentials over plain http (--insecure)", () => {
  const saved = process.env.DOCKER_CONFIG;
  after(() => {
    if (saved === undefined) delete process.env.DOCKER_CONFIG;
    else process.env.DOCKER_CONFIG = saved;
  });

  it("are sent to a loopback registry", async () => {
    const reg = await tokenRegistry((host) => `http://${host}/token`);
    try {
      process.env.DOCKER_CONFIG = await loginFor(reg.host);
      const image = await pullImage(`docker://${reg.host}/demo/app:v1`, {
        insecure: true,
        platform: AMD64,
        cacheDir: join(work, "cache"),
      });
      assert.equal(image.layers.length, 1);
      assert.deepEqual(reg.tokenAuth, [BASIC]);
    } finally {
      await reg.close();
    }
  });

  it("are never sent to a registry or realm off this machine, with one line saying so", async (t) => {
    const address = outsideAddress();
    if (!address) return t.skip("this machine has no non-loopback IPv4 address to test with");
    // Basic auth asked for by a registry reached over the network.
    const basicAsked: (string | undefined)[] = [];
    const basic = await fakeRegistry(
      (req, res) => {
        basicAsked.push(req.headers.authorization);
        res.writeHead(401, { "www-authenticate": 'Basic realm="r"' }).end();
      },
      { listen: "0.0.0.0" },
    );
    // A loopback registry whose token realm is on the network.
    const realm = await fakeRegistry(
      (req, res) => {
        basicAsked.push(req.headers.authorization);
        res.writeHead(200).end('{"token":"tok"}');
      },
      { listen: "0.0.0.0" },
    );
    const reg = await tokenRegistry(() => `http://${address}:${realm.port}/token`);
    try {
      const remote = `${address}:${basic.port}`;
      process.env.DOCKER_CONFIG = await loginFor(remote);
      const ref = `docker://${remote}/demo/app:v1`;
      await assert.rejects(
        pullImage(ref, { insecure: true, platform: AMD64, cacheDir: join(work, "cache") }),
        (err: unknown) => {
          assert.ok(err instanceof UserError, String(err));
          assert.match(
            err.message,
            new RegExp(
              `^${ref}: refusing to send the credentials from .*config\\.json over plain http to ${remote} \\(only https, or a loopback registry with --insecure\\)$`,
            ),
          );
          return true;
        },
      );
      process.env.DOCKER_CONFIG = await loginFor(reg.host);
      const ref2 = `docker://${reg.host}/demo/app:v1`;
      await assert.rejects(
        pullImage(ref2, { insecure: true, platform: AMD64, cacheDir: join(work, "cache") }),
        (err: unknown) => {
          assert.ok(err instanceof UserError, String(err));
          assert.match(err.message, new RegExp(`over plain http to ${address}:${realm.port} `));
          return true;
        },
      );
      assert.deepEqual(basicAsked.filter(Boolean), [], "no Authorization header left this machine");
      assert.deepEqual(realm.log, []);
    } finally {
      await Promise.all([basic.close(), realm.close(), reg.close()]);
    }
  });
});
