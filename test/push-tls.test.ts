/**
 * Pushing to a second registry, behind TLS and with auth (issue 16, item 5): Debian's
 * docker-registry with htpasswd and a certificate from a test CA made with openssl. The CLI
 * runs in a child process trusting that CA (NODE_EXTRA_CA_CERTS) and reads the credentials
 * where pulling reads them (DOCKER_CONFIG's config.json). skopeo reads the push back with the
 * CA (--cert-dir) and the credentials (--creds). The token scope is checked at a token realm
 * in front of a plain loopback registry.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { digestOf } from "../src/image/digest.js";
import { appBuilder } from "./support/app-build.js";
import { runCli } from "./support/cli.js";
import {
  fakeRegistry,
  forwardingProxy,
  makeTestCertificates,
  outsideAddress,
  type RegistryServer,
  startRegistry,
} from "./support/registry-server.js";

const PASSWORD = "s3cret-Pw";
const WRONG = "wr0ng-Pw";
let work: string;
let certs: ReturnType<typeof makeTestCertificates>;
/** skopeo's --cert-dir: the test CA as ca.crt. */
let certDir: string;
let tls: RegistryServer;
let cpio: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-pushtls-"));
  certs = makeTestCertificates(work);
  certDir = join(work, "certs");
  await mkdir(certDir);
  await copyFile(certs.caFile, join(certDir, "ca.crt"));
  cpio = await (await appBuilder(work))("app.cpio.gz", []);
  tls = await startRegistry({ users: { alice: PASSWORD }, tls: certs });
});
after(async () => {
  await tls?.stop();
  await rm(work, { recursive: true, force: true });
});

/** A DOCKER_CONFIG directory holding `user:password` for `host`, as `docker login` leaves it. */
async function login(host: string, user: string, password: string): Promise<string> {
  const dir = await mkdtemp(join(work, "docker-"));
  const auth = Buffer.from(`${user}:${password}`).toString("base64");
  await writeFile(join(dir, "config.json"), JSON.stringify({ auths: { [host]: { auth } } }));
  return dir;
}

/** `slimroot push ARGS` trusting the test CA, with the credentials in `dockerConfig`. */
const push = (args: string[], dockerConfig: string) =>
  runCli(["push", ...args], { NODE_EXTRA_CA_CERTS: certs.caFile, DOCKER_CONFIG: dockerConfig });

/** Neither the password nor its Basic encoding anywhere in what the CLI printed. */
function assertNoSecret(r: { stdout: string; stderr: string }, ...secrets: string[]) {
  for (const s of secrets)
    for (const form of [s, Buffer.from(`alice:${s}`).toString("base64")])
      assert.ok(!`${r.stdout}${r.stderr}`.includes(form), `a secret in the output: ${r.stderr}`);
}

const skopeoDigest = (repo: string) =>
  digestOf(
    execFileSync("skopeo", [
      "inspect",
      "--raw",
      "--cert-dir",
      certDir,
      "--creds",
      `alice:${PASSWORD}`,
      `docker://${tls.host}/${repo}:1`,
    ]),
  );

test("the right credentials over https: pushed, and skopeo reads it back with the CA and the credentials", async () => {
  const r = await push([cpio, `docker://${tls.host}/app:1`], await login(tls.host, "alice", PASSWORD));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^sha256:[0-9a-f]{64}\n$/);
  assert.equal(skopeoDigest("app"), r.stdout.trim());
  assertNoSecret(r, PASSWORD);
});

test("wrong credentials: one line naming the reference, exit 1, the tag unchanged, no secret in it", async () => {
  const before = skopeoDigest("app");
  const ref = `docker://${tls.host}/app:1`;
  const r = await push([cpio, ref], await login(tls.host, "alice", WRONG));
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stderr, `slimroot: ${ref}: authentication failed (401 Unauthorized) for user alice\n`);
  assertNoSecret(r, WRONG, PASSWORD);
  assert.equal(skopeoDigest("app"), before);
});

test("no credentials: one line saying so, exit 1", async () => {
  const ref = `docker://${tls.host}/app:1`;
  const r = await push([cpio, ref], await mkdtemp(join(work, "empty-")));
  assert.equal(r.code, 1, r.stderr);
  assert.equal(
    r.stderr,
    `slimroot: ${ref}: authentication required (401 Unauthorized); no credentials for ${tls.host} (run docker login ${tls.host})\n`,
  );
});

test("credentials never go over plain http off this machine: refused before a byte is sent", async (t) => {
  const address = outsideAddress();
  if (!address) return t.skip("this machine has no non-loopback IPv4 address to test with");
  const heard: (string | undefined)[] = [];
  const plain = await fakeRegistry(
    (req, res) => {
      heard.push(req.headers.authorization);
      res.writeHead(401, { "www-authenticate": 'Basic realm="r"' }).end();
    },
    { listen: "0.0.0.0" },
  );
  try {
    const remote = `${address}:${plain.port}`;
    const config = await login(remote, "alice", PASSWORD);
    const ref = `docker://${remote}/app:1`;
    const insecure = await push(["--insecure", cpio, ref], config);
    assert.equal(insecure.code, 1, insecure.stderr);
    assert.equal(
      insecure.stderr,
      `slimroot: ${ref}: refusing to push over plain http to ${remote} (--insecure is for a loopback registry only; use https)\n`,
    );
    assert.deepEqual(plain.log, [], "the registry heard nothing");
    // Without --insecure the client speaks TLS, which a plain http server cannot answer.
    const https = await push([cpio, ref], config);
    assert.notEqual(https.code, 0);
    assert.match(https.stderr, new RegExp(`^slimroot: ${ref}: [^\\n]+\\n$`));
    assert.deepEqual(plain.log, [], "no request was ever read in clear text");
    assert.deepEqual(heard, []);
    assertNoSecret(insecure, PASSWORD);
    assertNoSecret(https, PASSWORD);
  } finally {
    await plain.close();
  }
});

/**
 * A token realm in front of a plain loopback registry: tokens for alice (any scope: "rw") and
 * bob (pull only: "ro"); a push request with a pull-only token is refused as distribution's
 * token auth refuses it (401, error="insufficient_scope").
 */
async function tokenProxy(registry: RegistryServer) {
  const asked: { scope: string | null; authorization: string | undefined }[] = [];
  let realm = "";
  /** Answers 401 with the Bearer challenge; true: the request is answered. */
  const challenge = (res: ServerResponse, error = "") => {
    res.writeHead(401, { "www-authenticate": `Bearer realm="${realm}",service="test"${error}` }).end();
    return true;
  };
  const proxy = await forwardingProxy(registry, (req: IncomingMessage, _body, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname === "/token") {
      asked.push({ scope: url.searchParams.get("scope"), authorization: req.headers.authorization });
      const who = Buffer.from((req.headers.authorization ?? "").replace(/^Basic /, ""), "base64").toString();
      const token = who === `alice:${PASSWORD}` ? "rw" : who === `bob:${PASSWORD}` ? "ro" : undefined;
      if (!token) return challenge(res);
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token }));
      return true;
    }
    const auth = req.headers.authorization;
    if (auth !== "Bearer rw" && auth !== "Bearer ro") return challenge(res);
    if (auth === "Bearer ro" && req.method !== "GET" && req.method !== "HEAD")
      return challenge(res, ',error="insufficient_scope"');
    return false;
  });
  realm = `http://${proxy.host}/token`;
  return { proxy, asked };
}

test("a token registry: the token is bought with the credentials for a scope with push", async () => {
  const plain = await startRegistry();
  const { proxy, asked } = await tokenProxy(plain);
  try {
    const basic = `Basic ${Buffer.from(`alice:${PASSWORD}`).toString("base64")}`;
    const r = await push(
      ["--insecure", cpio, `docker://${proxy.host}/team/app:1`],
      await login(proxy.host, "alice", PASSWORD),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.ok(asked.length >= 1);
    for (const a of asked) {
      assert.equal(a.scope, "repository:team/app:pull,push");
      assert.equal(a.authorization, basic);
    }
    assertNoSecret(r, PASSWORD);
  } finally {
    await proxy.close();
    await plain.stop();
  }
});

test("a user who may pull but not push: one line saying push was refused, exit 1", async () => {
  const plain = await startRegistry();
  const { proxy } = await tokenProxy(plain);
  try {
    const ref = `docker://${proxy.host}/team/app:1`;
    const r = await push(["--insecure", cpio, ref], await login(proxy.host, "bob", PASSWORD));
    assert.equal(r.code, 1, r.stderr);
    assert.equal(
      r.stderr,
      `slimroot: ${ref}: access denied (401 Unauthorized): the repository does not exist or user bob may not push to it\n`,
    );
  } finally {
    await proxy.close();
    await plain.stop();
  }
});
