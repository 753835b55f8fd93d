/**
 * Runs Debian's real `docker-registry` (distribution v2) on 127.0.0.1 for tests, plus small
 * helpers to push blobs and manifests to it over plain HTTP.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer, get as httpsGet } from "node:https";
import type { AddressInfo } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { gunzipSync, gzipSync } from "node:zlib";
import { extract, pack } from "tar-stream";
import type { Image } from "../../src/image/types.js";
import { freePort } from "../../src/util/net.js";

export interface RegistryServer {
  /** "127.0.0.1:PORT", to put in references: `docker://${host}/repo:tag`. */
  host: string;
  /** "http://127.0.0.1:PORT" (https with `tls`). */
  url: string;
  /** The registry's filesystem storage root (e.g. to corrupt a blob on purpose). */
  storageDir: string;
  /** Kills the registry and removes its temp dir; safe to call twice. */
  stop(): Promise<void>;
}

export interface RegistryOptions {
  /** Enables htpasswd (Basic) auth with these user -> password pairs. */
  users?: Record<string, string>;
  /** Serves https with this key and certificate (PEM, e.g. from makeTestCertificates). */
  tls?: { key: string; cert: string };
}

export interface BasicAuth {
  username: string;
  password: string;
}

const REGISTRY_BIN = "/usr/bin/docker-registry";

/** Starts a registry and waits until /v2/ answers. On any failure nothing is left running. */
export async function startRegistry(opts: RegistryOptions = {}): Promise<RegistryServer> {
  const dir = await mkdtemp(join(tmpdir(), "slimroot-registry-"));
  const storageDir = join(dir, "storage");
  let child: ChildProcess | undefined;
  const killOnExit = () => child?.kill("SIGKILL");
  process.once("exit", killOnExit);

  const stop = async () => {
    process.off("exit", killOnExit);
    const c = child;
    child = undefined;
    if (c && c.exitCode === null && c.signalCode === null) {
      const exited = new Promise((resolve) => c.once("exit", resolve));
      c.kill("SIGTERM");
      const timer = setTimeout(() => c.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };

  try {
    let auth = "";
    if (opts.users) {
      const lines = Object.entries(opts.users).map(([user, pass]) =>
        execFileSync("htpasswd", ["-Bbn", user, pass], { encoding: "utf8" }).trim(),
      );
      await writeFile(join(dir, "htpasswd"), `${lines.join("\n")}\n`);
      auth = `auth:\n  htpasswd:\n    realm: slimroot-test\n    path: ${join(dir, "htpasswd")}\n`;
    }
    let tls = "";
    if (opts.tls) {
      await writeFile(join(dir, "server.key"), opts.tls.key);
      await writeFile(join(dir, "server.pem"), opts.tls.cert);
      tls = `  tls:\n    certificate: ${join(dir, "server.pem")}\n    key: ${join(dir, "server.key")}`;
    }
    // A port can be taken between freePort() and the registry binding it: retry a few times.
    for (let attempt = 0; ; attempt++) {
      const port = await freePort();
      const config = join(dir, "config.yml");
      await writeFile(
        config,
        [
          "version: 0.1",
          "log:",
          "  level: error",
          "  accesslog:",
          "    disabled: true",
          "storage:",
          "  filesystem:",
          `    rootdirectory: ${storageDir}`,
          "  delete:",
          "    enabled: true",
          "http:",
          `  addr: 127.0.0.1:${port}`,
          "  secret: slimroot-test-secret",
          tls,
          auth,
        ].join("\n"),
      );
      const proc = spawn(REGISTRY_BIN, ["serve", config], { stdio: ["ignore", "ignore", "pipe"] });
      child = proc;
      let stderr = "";
      proc.stderr?.on("data", (d: Buffer) => {
        stderr = (stderr + d.toString()).slice(-4000);
      });
      const url = `${opts.tls ? "https" : "http"}://127.0.0.1:${port}`;
      const up = await waitUntilUp(url, proc);
      if (up) return { host: `127.0.0.1:${port}`, url, storageDir, stop };
      child = undefined;
      proc.kill("SIGKILL");
      if (attempt >= 2 || !/address already in use/.test(stderr)) {
        throw new Error(`docker-registry did not start: ${stderr.trim() || "no output"}`);
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Resolves when `url` answers anything; over https without checking the certificate (up, not trusted). */
function probe(url: string): Promise<void> {
  if (url.startsWith("http:")) return fetch(url, { signal: AbortSignal.timeout(1000) }).then(() => undefined);
  return new Promise((resolve, reject) => {
    const req = httpsGet(url, { rejectUnauthorized: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve();
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

/** Polls /v2/ until it answers (any status: 401 counts) or the process dies; 10 s at most. */
async function waitUntilUp(url: string, proc: ChildProcess): Promise<boolean> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) return false;
    try {
      await probe(`${url}/v2/`);
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return false;
}

/** Runs `fn` with a registry that is stopped afterwards, whatever happens. */
export async function withRegistry<T>(
  opts: RegistryOptions,
  fn: (registry: RegistryServer) => Promise<T>,
): Promise<T> {
  const registry = await startRegistry(opts);
  try {
    return await fn(registry);
  } finally {
    await registry.stop();
  }
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

function authHeaders(auth?: BasicAuth): Record<string, string> {
  return auth
    ? { authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString("base64")}` }
    : {};
}

/** Uploads a blob monolithically (POST then PUT ?digest=); returns its descriptor. */
export async function pushBlob(
  url: string,
  repo: string,
  data: Buffer,
  auth?: BasicAuth,
): Promise<{ digest: string; size: number }> {
  const digest = sha256(data);
  const start = await fetch(`${url}/v2/${repo}/blobs/uploads/`, {
    method: "POST",
    headers: authHeaders(auth),
  });
  await start.arrayBuffer();
  const location = start.headers.get("location");
  if (start.status !== 202 || !location) throw new Error(`blob upload start: ${start.status}`);
  const target = new URL(location, url);
  target.searchParams.set("digest", digest);
  const put = await fetch(target, {
    method: "PUT",
    headers: { ...authHeaders(auth), "content-type": "application/octet-stream" },
    body: new Uint8Array(data),
  });
  await put.arrayBuffer();
  if (put.status !== 201) throw new Error(`blob upload: ${put.status}`);
  return { digest, size: data.length };
}

/** PUTs a manifest or index under `reference` (tag or digest); returns its digest. */
export async function pushManifest(
  url: string,
  repo: string,
  reference: string,
  mediaType: string,
  body: string,
  auth?: BasicAuth,
): Promise<string> {
  const res = await fetch(`${url}/v2/${repo}/manifests/${reference}`, {
    method: "PUT",
    headers: { ...authHeaders(auth), "content-type": mediaType },
    body,
  });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`manifest upload: ${res.status} ${text}`);
  return sha256(body);
}

export interface TestImage {
  /** Manifest digest. */
  digest: string;
  manifest: string;
  config: { digest: string; size: number };
  layers: { digest: string; size: number }[];
}

/**
 * Pushes a single-platform OCI image made of the given layer blobs (already compressed or
 * plain tar) with an image config built from `config` (the config JSON's `config` object).
 */
export async function pushTestImage(
  url: string,
  repo: string,
  tag: string,
  layerBlobs: Buffer[],
  opts: { config?: Record<string, unknown>; os?: string; architecture?: string; auth?: BasicAuth } = {},
): Promise<TestImage> {
  const layers = [];
  for (const blob of layerBlobs) layers.push(await pushBlob(url, repo, blob, opts.auth));
  const configJson = JSON.stringify({
    architecture: opts.architecture ?? "amd64",
    os: opts.os ?? "linux",
    config: opts.config ?? {},
    rootfs: { type: "layers", diff_ids: layerBlobs.map((b) => sha256(isGzip(b) ? gunzipSync(b) : b)) },
  });
  const config = await pushBlob(url, repo, Buffer.from(configJson), opts.auth);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: layers.map((l, i) => ({
      mediaType: `application/vnd.oci.image.layer.v1.tar${isGzip(layerBlobs[i]!) ? "+gzip" : ""}`,
      ...l,
    })),
  });
  const digest = await pushManifest(
    url,
    repo,
    tag,
    "application/vnd.oci.image.manifest.v1+json",
    manifest,
    opts.auth,
  );
  return { digest, manifest, config, layers };
}

function isGzip(b: Buffer): boolean {
  return b[0] === 0x1f && b[1] === 0x8b;
}

/** A tar (gzipped unless told otherwise) holding the given files. */
export async function makeLayer(
  files: Record<string, string>,
  opts: { gzip?: boolean } = {},
): Promise<Buffer> {
  const p = pack();
  for (const [name, body] of Object.entries(files)) p.entry({ name, mode: 0o644 }, body);
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p as unknown as AsyncIterable<Buffer>) chunks.push(c);
  const tar = Buffer.concat(chunks);
  return opts.gzip === false ? tar : gzipSync(tar);
}

async function readTar(stream: Readable): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const ex = extract();
  stream.on("error", (err) => ex.destroy(err));
  stream.pipe(ex);
  for await (const entry of ex) {
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    out[entry.header.name] = Buffer.concat(chunks).toString();
  }
  return out;
}

/** Every layer's files, merged bottom first. */
export async function contents(image: Image): Promise<Record<string, string>> {
  const all: Record<string, string> = {};
  for (const layer of image.layers) Object.assign(all, await readTar(await layer.open()));
  return all;
}

/** What a fake registry serves on: plain http, or https with a key and certificate. */
export interface FakeRegistryOptions {
  tls?: { key: string; cert: string };
  /** Listen address; "127.0.0.1" unless said (e.g. "0.0.0.0" to be reached on a non-loopback address). */
  listen?: string;
}

/** A registry in a few lines of Node: whatever `handle` does, with its request log. */
export async function fakeRegistry(
  handle: (req: IncomingMessage, res: ServerResponse, host: string) => void,
  opts: FakeRegistryOptions = {},
) {
  const log: string[] = [];
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    log.push(`${req.method} ${req.url}`);
    handle(req, res, `127.0.0.1:${(server.address() as AddressInfo).port}`);
  };
  const server = opts.tls ? createHttpsServer(opts.tls, listener) : createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, opts.listen ?? "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const host = `127.0.0.1:${port}`;
  return {
    host,
    port,
    log,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * A test CA and a server certificate it signed for 127.0.0.1 and localhost, made with
 * openssl in `dir`. Trust `caFile` (NODE_EXTRA_CA_CERTS in a child process) to talk https.
 */
export function makeTestCertificates(dir: string): { caFile: string; key: string; cert: string } {
  const run = (args: string[]) =>
    execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  run([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=slimroot test CA",
  ]);
  run(["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
  writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  run([
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  ]);
  return {
    caFile: join(dir, "ca.pem"),
    key: readFileSync(join(dir, "server.key"), "utf8"),
    cert: readFileSync(join(dir, "server.pem"), "utf8"),
  };
}

/** This machine's first non-loopback IPv4 address, if it has one. */
export function outsideAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

/** Content a fake registry serves: one image under repo "demo/app", tag "v1". */
export async function fakeImage(
  opts: { editManifest?: (m: { layers: Record<string, unknown>[] }) => void } = {},
) {
  const layer = await makeLayer({ fake: "yes" });
  const config = Buffer.from(JSON.stringify({ os: "linux", architecture: "amd64", config: { Cmd: ["sh"] } }));
  const doc = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: sha256(config),
      size: config.length,
    },
    layers: [
      {
        mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
        digest: sha256(layer),
        size: layer.length,
      } as Record<string, unknown>,
    ],
  };
  opts.editManifest?.(doc);
  const manifest = JSON.stringify(doc);
  const blobs = new Map([
    [sha256(layer), layer],
    [sha256(config), config],
  ]);
  /** Serves the manifest (for tag v1 or its digest) and blobs; false if the path is not one of those. */
  const serve = (req: IncomingMessage, res: ServerResponse): boolean => {
    const m = /^\/v2\/demo\/app\/(manifests|blobs)\/(.+)$/.exec(req.url ?? "");
    if (!m) return false;
    if (m[1] === "manifests" && (m[2] === "v1" || m[2] === sha256(manifest))) {
      res.writeHead(200, { "content-type": "application/vnd.oci.image.manifest.v1+json" }).end(manifest);
    } else if (m[1] === "blobs" && blobs.has(m[2]!)) {
      res.writeHead(200).end(blobs.get(m[2]!));
    } else {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code: "MANIFEST_UNKNOWN", message: "manifest unknown" }] }));
    }
    return true;
  };
  return { layer, config, manifest, serve };
}

/** What a forwarding proxy's hook may do with a request before it goes to the real registry. */
export type ProxyHook = (
  req: IncomingMessage,
  body: Buffer | undefined,
  res: ServerResponse,
) => boolean | Promise<boolean>;

/**
 * A proxy in front of a real registry on loopback: each request, body read whole, goes to
 * `hook` first (which answers it itself and returns true, to drop or stand in), else to the
 * registry, with Location headers rewritten to the proxy. `onAnswer` may add headers.
 */
export async function forwardingProxy(
  registry: RegistryServer,
  hook: ProxyHook,
  onAnswer: (
    req: IncomingMessage,
    body: Buffer | undefined,
    status: number,
    headers: Record<string, string>,
  ) => void = () => {},
) {
  return fakeRegistry((req, res, host) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const body = chunks.length ? Buffer.concat(chunks) : undefined;
      if (await hook(req, body, res)) return;
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers))
        if (typeof v === "string" && k !== "host") headers[k] = v;
      const up = await fetch(`${registry.url}${req.url}`, {
        method: req.method!,
        headers,
        ...(body && req.method !== "GET" && req.method !== "HEAD" ? { body } : {}),
        redirect: "manual",
      });
      const out: Record<string, string> = {};
      up.headers.forEach((v, k) => {
        // A HEAD's Content-Length is the blob's size (the body, empty, would say 0).
        if (
          k === "content-length"
            ? req.method === "HEAD"
            : k !== "transfer-encoding" && k !== "content-encoding"
        )
          out[k] = k === "location" ? v.replace(registry.host, host) : v;
      });
      onAnswer(req, body, up.status, out);
      res.writeHead(up.status, out).end(Buffer.from(await up.arrayBuffer()));
    });
  });
}
