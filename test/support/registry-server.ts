/**
 * Runs Debian's real `docker-registry` (distribution v2) on 127.0.0.1 for tests, plus small
 * helpers to push blobs and manifests to it over plain HTTP.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { freePort } from "../../src/util/net.js";

export interface RegistryServer {
  /** "127.0.0.1:PORT", to put in references: `docker://${host}/repo:tag`. */
  host: string;
  /** "http://127.0.0.1:PORT". */
  url: string;
  /** The registry's filesystem storage root (e.g. to corrupt a blob on purpose). */
  storageDir: string;
  /** Kills the registry and removes its temp dir; safe to call twice. */
  stop(): Promise<void>;
}

export interface RegistryOptions {
  /** Enables htpasswd (Basic) auth with these user -> password pairs. */
  users?: Record<string, string>;
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
          auth,
        ].join("\n"),
      );
      const proc = spawn(REGISTRY_BIN, ["serve", config], { stdio: ["ignore", "ignore", "pipe"] });
      child = proc;
      let stderr = "";
      proc.stderr?.on("data", (d: Buffer) => {
        stderr = (stderr + d.toString()).slice(-4000);
      });
      const url = `http://127.0.0.1:${port}`;
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

/** Polls /v2/ until it answers (any status: 401 counts) or the process dies; 10 s at most. */
async function waitUntilUp(url: string, proc: ChildProcess): Promise<boolean> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) return false;
    try {
      await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
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
