/**
 * A push through a proxy in front of Debian's real docker-registry that fails on purpose:
 * a PATCH dropped mid-upload (resumed from the offset the registry reports), a PUT answered
 * 500 (retried), a registry that answers 500 for ever or lies about a digest (one line, the
 * tag unchanged), and a blob mounted from another repository (no blob byte sent).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { digestOf } from "../src/image/digest.js";
import { MEDIA } from "../src/image/manifest.js";
import { RegistrySession } from "../src/image/registry/session.js";
import { pushFiles } from "../src/publish/push.js";
import { appBuilder } from "./support/app-build.js";
import { runCli } from "./support/cli.js";
import {
  forwardingProxy,
  type ProxyHook,
  type RegistryServer,
  startRegistry,
} from "./support/registry-server.js";

let work: string;
let registry: RegistryServer;
let cpio: string;
let ext4: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-pushrobust-"));
  const build = await appBuilder(work);
  cpio = await build("app.cpio.gz", []);
  ext4 = await build("app.ext4", ["--format", "ext4", "--size", "8M"]);
  registry = await startRegistry();
});
after(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

/** Blob bytes that went through the proxy, and each request it saw. */
interface Traffic {
  uploaded: number;
  requests: string[];
}

/** A proxy whose `hook` may fail a request; counts the upload bytes that reached it. */
async function faultyProxy(hook: ProxyHook = () => false, onAnswer?: Parameters<typeof forwardingProxy>[2]) {
  const traffic: Traffic = { uploaded: 0, requests: [] };
  const proxy = await forwardingProxy(
    registry,
    (req: IncomingMessage, body, res) => {
      traffic.requests.push(`${req.method} ${req.url?.replace(/\?_state=[^&]*&?/, "?")}`);
      if (/\/blobs\/uploads\//.test(req.url ?? "") && body) traffic.uploaded += body.length;
      return hook(req, body, res);
    },
    onAnswer,
  );
  return { proxy, traffic };
}

const pattern = (n: number) => {
  const data = Buffer.alloc(n);
  for (let i = 0; i < n; i++) data[i] = (i * 7919 + n) & 0xff;
  return data;
};

const session = (host: string, repo: string) =>
  RegistrySession.open(`docker://${host}/${repo}:1`, { insecure: true, push: true });

async function stored(repo: string, digest: string): Promise<Buffer> {
  const res = await fetch(`${registry.url}/v2/${repo}/blobs/${digest}`);
  assert.equal(res.status, 200);
  return Buffer.from(await res.arrayBuffer());
}

const tagDigest = (repo: string) =>
  digestOf(
    execFileSync("skopeo", ["inspect", "--raw", "--tls-verify=false", `docker://${registry.host}/${repo}:1`]),
  );

test("a PATCH dropped mid-upload: the upload resumes at the registry's offset, no chunk sent twice", async () => {
  const data = pattern(300_000);
  let patches = 0;
  const { proxy, traffic } = await faultyProxy((req) => {
    if (req.method === "PATCH" && ++patches === 3) {
      req.socket.destroy();
      return true;
    }
    return false;
  });
  try {
    const s = await session(proxy.host, "resume");
    let sent = 0;
    await s.uploadBlob({ bytes: data }, digestOf(data), (n) => (sent += n), 64 * 1024);
    assert.equal(sent, data.length);
    assert.ok((await stored("resume", digestOf(data))).equals(data));
    // 5 chunks of at most 64 KiB, the third twice (dropped, then sent again): nothing else again.
    assert.equal(patches, 6);
    assert.equal(traffic.uploaded, data.length + 64 * 1024);
    assert.equal(traffic.requests.filter((r) => r.startsWith("GET /v2/resume/blobs/uploads/")).length, 1);
  } finally {
    await proxy.close();
  }
});

test("a registry that forgot the upload after a drop: a new upload from the first byte, the blob whole", async () => {
  const data = pattern(200_000);
  let patches = 0;
  let statusAsked = 0;
  const { proxy } = await faultyProxy((req, _body, res) => {
    if (req.method === "PATCH" && ++patches === 2) {
      req.socket.destroy();
      return true;
    }
    if (req.method === "GET" && req.url?.includes("/blobs/uploads/")) {
      statusAsked++;
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code: "BLOB_UPLOAD_UNKNOWN", message: "blob upload unknown" }] }));
      return true;
    }
    return false;
  });
  try {
    const s = await session(proxy.host, "forgot");
    let sent = 0;
    await s.uploadBlob({ bytes: data }, digestOf(data), (n) => (sent += n), 64 * 1024);
    assert.equal(statusAsked, 1);
    assert.equal(sent, data.length, "progress counts each byte once in the end");
    assert.ok((await stored("forgot", digestOf(data))).equals(data));
  } finally {
    await proxy.close();
  }
});

test("a PATCH the registry took but whose answer was lost: docker-registry forgets the URL, the upload starts again, the blob whole", async () => {
  const data = pattern(200_000);
  let patches = 0;
  let posts = 0;
  const { proxy } = await faultyProxy(async (req, body) => {
    if (req.method === "POST") posts++;
    if (req.method === "PATCH" && ++patches === 2) {
      // Sent on to the registry, which stores the chunk; then the client's connection drops.
      const headers = {
        "content-type": "application/octet-stream",
        "content-range": `${req.headers["content-range"]}`,
      };
      const up = await fetch(`${registry.url}${req.url}`, {
        method: "PATCH",
        headers,
        body: new Uint8Array(body ?? []),
      });
      await up.arrayBuffer();
      assert.equal(up.status, 202);
      req.socket.destroy();
      return true;
    }
    return false;
  });
  try {
    await (await session(proxy.host, "lostanswer")).uploadBlob(
      { bytes: data },
      digestOf(data),
      () => {},
      64 * 1024,
    );
    assert.equal(posts, 2, "a second upload after the registry forgot the first one's URL");
    assert.ok((await stored("lostanswer", digestOf(data))).equals(data));
  } finally {
    await proxy.close();
  }
});

test("a 500 on the first PUT is retried and the blob stored", async () => {
  const data = pattern(1000);
  let puts = 0;
  const { proxy } = await faultyProxy((req, _body, res) => {
    if (req.method === "PUT" && ++puts === 1) {
      res.writeHead(500).end();
      return true;
    }
    return false;
  });
  try {
    await (await session(proxy.host, "put500")).uploadBlob({ bytes: data }, digestOf(data));
    assert.equal(puts, 2);
    assert.ok((await stored("put500", digestOf(data))).equals(data));
  } finally {
    await proxy.close();
  }
});

test("a registry answering 500 for ever: one line, exit 2, the tag unchanged; then a push succeeds", async () => {
  const before = await pushOk(cpio, registry.host, "forever");
  let failing = true;
  const { proxy } = await faultyProxy((req, _body, res) => {
    if (failing && req.method === "PUT" && req.url?.includes("/blobs/uploads/")) {
      res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code: "UNKNOWN", message: "disk on fire" }] }));
      return true;
    }
    return false;
  });
  try {
    const r = await runCli(["push", "--insecure", ext4, `docker://${proxy.host}/forever:1`]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /^slimroot: docker:\/\/[^\n]*forever:1: upload of blob sha256:[0-9a-f]+ refused: 500 Internal Server Error: disk on fire\n$/,
    );
    assert.equal(tagDigest("forever"), before, "the old manifest is still served");
    failing = false;
    const again = await pushOk(ext4, proxy.host, "forever");
    assert.equal(tagDigest("forever"), again);
  } finally {
    await proxy.close();
  }
});

test("a registry lying about a blob's digest or a manifest's: one line naming the reference, the tag unchanged", async () => {
  const before = await pushOk(cpio, registry.host, "liar");
  const lie = `sha256:${"0".repeat(64)}`;
  const { proxy } = await faultyProxy(undefined, (req, _body, _status, headers) => {
    if (
      (req.method === "HEAD" && req.url?.includes("/blobs/")) ||
      (req.method === "PUT" && req.url?.includes("/manifests/"))
    )
      if (headers["docker-content-digest"]) headers["docker-content-digest"] = lie;
  });
  try {
    const r = await runCli(["push", "--insecure", ext4, `docker://${proxy.host}/liar:1`]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /^slimroot: docker:\/\/[^\n]*liar:1: upload of blob sha256:[0-9a-f]+: the registry holds sha256:0{64} of \d+ bytes, we sent \d+ bytes\n$/,
    );
    assert.equal(tagDigest("liar"), before);
    // The tag's own manifest, sent again: the registry takes it, the proxy lies about its digest.
    const manifest = execFileSync("skopeo", [
      "inspect",
      "--raw",
      "--tls-verify=false",
      `docker://${registry.host}/liar:1`,
    ]);
    await assert.rejects(
      (await session(proxy.host, "liar")).putManifest("1", MEDIA.ociManifest, manifest),
      new RegExp(
        `^Error: docker://[^\\n]*liar:1: manifest 1: the registry stored ${lie}, we sent sha256:[0-9a-f]+$`,
      ),
    );
  } finally {
    await proxy.close();
  }
});

test("a blob the registry holds in another repository is mounted: no blob byte goes through the proxy", async (t) => {
  const { proxy, traffic } = await faultyProxy();
  try {
    // Named by the caller (e.g. where the kernel went).
    const data = pattern(200_000);
    await (await session(registry.host, "kernels")).uploadBlob({ bytes: data }, digestOf(data));
    await (await session(proxy.host, "app")).uploadBlob(
      { bytes: data },
      digestOf(data),
      () => {},
      undefined,
      ["kernels"],
    );
    assert.equal(traffic.uploaded, 0);
    assert.ok(traffic.requests.some((r) => r.startsWith("POST /v2/app/blobs/uploads/?mount=sha256")));
    assert.ok((await stored("app", digestOf(data))).equals(data));
    // Pushed earlier in this process to another repository of the same registry.
    await pushFiles([cpio], `docker://${proxy.host}/first:1`, { insecure: true, epoch: 0 });
    const firstBytes = traffic.uploaded;
    assert.ok(firstBytes >= (await readFile(cpio)).length);
    const r = await pushFiles([cpio], `docker://${proxy.host}/second:1`, { insecure: true, epoch: 0 });
    assert.equal(traffic.uploaded, firstBytes, "the second repository got its blobs by mount");
    t.diagnostic(
      `first push: ${firstBytes} upload bytes through the proxy; second, to another repository: ${traffic.uploaded - firstBytes}`,
    );
    assert.equal(tagDigest("second"), r.digest);
  } finally {
    await proxy.close();
  }
});

test("--mount-from REPO: a blob another repository holds is mounted from it, no blob byte sent", async () => {
  // Pushed by another process: this one knows of it only through the flag.
  await pushOk(cpio, registry.host, "held");
  const { proxy, traffic } = await faultyProxy();
  try {
    const r = await runCli([
      "push",
      "--insecure",
      "--mount-from",
      "held",
      cpio,
      `docker://${proxy.host}/mounted:1`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(traffic.uploaded, 0, "no blob byte went through the proxy");
    assert.ok(
      traffic.requests.some((q) =>
        /^POST \/v2\/mounted\/blobs\/uploads\/\?mount=sha256%3A[0-9a-f]{64}&from=held$/.test(q),
      ),
    );
    assert.equal(tagDigest("mounted"), r.stdout.trim());
    // The same push without the flag sends the bytes.
    await pushOk(cpio, proxy.host, "unmounted");
    assert.ok(traffic.uploaded >= (await readFile(cpio)).length);
  } finally {
    await proxy.close();
  }
});

test("--mount-from with a host, tag or bad name: one line naming it, exit 1, nothing sent", async () => {
  for (const [from, why] of [
    ["127.0.0.1:5000/held", "a repository path on the same registry, without a host, tag or digest"],
    ["held:1", "a repository path on the same registry, without a host, tag or digest"],
    ["Held", 'bad repository name component "Held" (must be lowercase)'],
  ]) {
    const r = await runCli([
      "push",
      "--insecure",
      "--mount-from",
      from!,
      cpio,
      `docker://${registry.host}/x:1`,
    ]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, `slimroot: --mount-from ${from}: ${why}\n`);
  }
});

async function pushOk(file: string, host: string, repo: string): Promise<string> {
  const r = await runCli(["push", "--insecure", file, `docker://${host}/${repo}:1`]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}
