import { type FileHandle, open } from "node:fs/promises";
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { setTimeout as sleep } from "node:timers/promises";
import { EnvironmentError, UserError } from "../../util/errors.js";
import { digestOf, verifyDigest } from "../digest.js";
import type { Descriptor } from "../manifest.js";
import { isLoopback, RegistryAuth } from "./auth.js";
import type { BlobCache } from "./blob-cache.js";
import { loadCredentials } from "./credentials.js";
import { discard, readCapped, statusError } from "./http.js";
import { displayRef, parseReference, type Reference } from "./reference.js";

/** distribution refuses manifests over 4 MiB. */
export const MAX_MANIFEST = 4 << 20;
/** Blobs up to this size go in one PUT; larger ones in PATCHes of this size, then the PUT. */
export const UPLOAD_CHUNK = 32 << 20;

/**
 * One repository on one registry, with the auth answering its challenges: what pulling and
 * pushing share (the same credential rules, the same one-line errors naming the reference).
 */
export class RegistrySession {
  readonly where: string;
  readonly ref: Reference;
  readonly base: string;
  private readonly scope: string;

  private constructor(
    text: string,
    readonly auth: RegistryAuth,
    push: boolean,
  ) {
    this.where = displayRef(text);
    this.ref = parseReference(text);
    this.base = `${auth.registryUrl}${this.ref.repository}`;
    this.scope = `repository:${this.ref.repository}:${push ? "pull,push" : "pull"}`;
  }

  /**
   * Opens `text` (`[docker://]host/repo[:tag][@digest]`). Pushing over plain http goes only to
   * a loopback registry: what is pushed (and the tag it moves) must not cross a network in
   * clear text where anyone on the path could change it.
   */
  static async open(text: string, o: { insecure?: boolean; push?: boolean } = {}): Promise<RegistrySession> {
    const where = displayRef(text);
    const r = parseReference(text);
    const insecure = Boolean(o.insecure);
    if (insecure && o.push && !isLoopback(new URL(`http://${r.registry}/`).hostname))
      throw new UserError(
        `${where}: refusing to push over plain http to ${r.registry} (--insecure is for a loopback registry only; use https)`,
      );
    const registryUrl = `${insecure ? "http" : "https"}://${r.registry}/v2/`;
    const credentials = await loadCredentials(r.registry, where);
    const auth = new RegistryAuth({ registryUrl, insecure, credentials, where });
    return new RegistrySession(text, auth, Boolean(o.push));
  }

  fetch(path: string, opts: Parameters<RegistryAuth["fetch"]>[1]): Promise<Response> {
    return this.auth.fetch(path.startsWith("http") ? path : `${this.base}${path}`, opts, this.scope);
  }

  /** The manifest `reference` (tag or digest), capped and verified against `expect` when given. */
  async manifest(
    reference: string,
    accept: string,
    expect?: string,
    size = MAX_MANIFEST,
  ): Promise<{ bytes: Buffer; digest: string; type: string | undefined }> {
    if (size > MAX_MANIFEST)
      throw new UserError(`${this.where}: manifest ${reference} is too large (${size} bytes)`);
    const what = `manifest ${reference}`;
    const res = await this.fetch(`/manifests/${reference}`, { what, size, headers: { accept } });
    if (!res.ok) throw await statusError(res, `cannot fetch ${what}`, this.where);
    const bytes = await readCapped(res, size, what, this.where);
    if (expect) verifyDigest(bytes, expect, `${this.where}: ${what}`);
    // Some registries omit mediaType in the body; the Content-Type header then says it.
    const type = res.headers.get("content-type")?.split(";")[0]?.trim();
    return { bytes, digest: expect ?? digestOf(bytes), type };
  }

  /** The blob, from the cache when it is there (and still hashes right), else fetched into it. */
  async blob(
    d: Descriptor,
    cache: BlobCache,
    signal?: AbortSignal,
    onBytes: (n: number) => void = () => {},
  ): Promise<string> {
    if (await cache.has(d, this.where)) {
      onBytes(d.size);
      return cache.path(d.digest, this.where);
    }
    const what = `blob ${d.digest}`;
    const res = await this.fetch(`/blobs/${d.digest}`, { what, size: d.size, signal });
    if (!res.ok) throw await statusError(res, `cannot fetch ${what}`, this.where);
    if (!res.body) throw new EnvironmentError(`${this.where}: ${what} came with no body`);
    const body = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
    return cache.store(d, body, this.where, onBytes);
  }

  /** True when the repository already holds the blob (HEAD): it is not sent again. */
  async hasBlob(digest: string): Promise<boolean> {
    const what = `blob ${digest}`;
    const res = await this.fetch(`/blobs/${digest}`, { what, size: 0, method: "HEAD" });
    await discard(res);
    if (res.status === 404) return false;
    if (res.ok) {
      this.holds(digest);
      return true;
    }
    throw await statusError(res, `cannot check ${what}`, this.where);
  }

  /**
   * Uploads a blob: bytes, or a file of `size` bytes. Small ones in one PUT after the POST,
   * larger ones in PATCHes of UPLOAD_CHUNK, then the PUT with the digest (the registry checks
   * it and refuses the blob when the bytes it got do not hash to it). A request that fails for
   * the environment's reason (5xx, a dropped connection) is tried again after a bounded
   * exponential backoff, from the offset the registry says it holds (GET on the upload URL,
   * `Range: 0-N`) rather than from the first byte. `mountFrom`: repositories on this registry
   * that may hold the blob already; the registry is asked to mount it from each first.
   */
  async uploadBlob(
    source: BlobSource,
    digest: string,
    onBytes: (n: number) => void = () => {},
    chunkSize = UPLOAD_CHUNK,
    mountFrom: string[] = [],
  ): Promise<void> {
    const what = `upload of blob ${digest}`;
    const size = sourceSize(source);
    let location: string | undefined;
    const seen = this.pushed();
    const sources = new Set([...(seen.get(digest) ?? []), ...mountFrom]);
    sources.delete(this.ref.repository);
    for (const from of sources) {
      location = await this.mount(digest, from, what);
      if (!location) {
        onBytes(size);
        await this.checkStored(digest, size, what);
        this.holds(digest);
        return;
      }
    }
    location ??= await this.startUpload(what);
    const read = await chunkReader(source);
    let offset = 0;
    const moveTo = (at: number) => {
      onBytes(at - offset);
      offset = at;
    };
    try {
      // After a failure, `lost`: where the registry stands is asked first (that too may fail, and is retried).
      let lost = false;
      for (let failures = 0; ; ) {
        try {
          if (lost) {
            const at = await this.uploadOffset(location, what);
            if (at) {
              location = at.location;
              moveTo(at.offset);
            } else if (await this.hasBlob(digest)) {
              // The PUT went through and only its answer was lost.
              moveTo(size);
              break;
            } else {
              // The registry forgot the upload: a new one, from the first byte.
              location = await this.startUpload(what);
              moveTo(0);
            }
            lost = false;
          }
          if (size > chunkSize && offset < size) {
            const chunk = await read(offset, Math.min(chunkSize, size - offset));
            const res = await this.fetch(location, {
              what,
              size: chunk.length,
              method: "PATCH",
              body: chunk,
              headers: {
                "content-type": "application/octet-stream",
                "content-range": `${offset}-${offset + chunk.length - 1}`,
              },
            });
            if (res.status !== 202)
              throw await statusError(res, `${what} failed at byte ${offset}`, this.where);
            await discard(res);
            location = this.nextLocation(res, what);
            moveTo(offset + chunk.length);
            continue;
          }
          await this.finishUpload(location, digest, await read(offset, size - offset), what);
          moveTo(size);
          break;
        } catch (err) {
          if (
            !(err instanceof EnvironmentError) ||
            err instanceof IntegrityError ||
            failures >= UPLOAD_RETRIES
          )
            throw err;
          await sleep(uploadBackoffMs(failures++));
          lost = true;
        }
      }
    } finally {
      await read.close();
    }
    await this.checkStored(digest, size, what);
    this.holds(digest);
  }

  /** Blobs known to be in each repository of this registry, from this process's pushes. */
  private pushed(): Map<string, Set<string>> {
    const m = knownBlobs.get(this.auth.registryUrl) ?? new Map<string, Set<string>>();
    knownBlobs.set(this.auth.registryUrl, m);
    return m;
  }

  /** Notes that this repository holds `digest`: a later upload to another one may mount it. */
  private holds(digest: string): void {
    const m = this.pushed();
    m.set(digest, new Set([...(m.get(digest) ?? []), this.ref.repository]));
  }

  private async startUpload(what: string): Promise<string> {
    const start = await this.fetch("/blobs/uploads/", { what, size: 0, method: "POST" });
    if (start.status !== 202) throw await statusError(start, `cannot start ${what}`, this.where);
    await discard(start);
    return this.nextLocation(start, what);
  }

  /**
   * Asks the registry to mount the blob from `from` (the OCI distribution spec's cross-repository
   * mount): undefined when it did (201), else the upload location it opened instead (202).
   */
  private async mount(digest: string, from: string, what: string): Promise<string | undefined> {
    const query = new URLSearchParams({ mount: digest, from });
    const res = await this.fetch(`/blobs/uploads/?${query}`, { what, size: 0, method: "POST" });
    await discard(res);
    if (res.status === 201) return undefined;
    // 202: the registry opened an upload instead. Anything else: the mount is only a saving,
    // so the bytes go up as they would have.
    return res.status === 202 ? this.nextLocation(res, what) : this.startUpload(what);
  }

  /** The last PUT, with the bytes not sent yet and the digest. */
  private async finishUpload(location: string, digest: string, body: Buffer, what: string): Promise<void> {
    const target = new URL(location);
    target.searchParams.set("digest", digest);
    const res = await this.fetch(target.href, {
      what,
      size: body.length,
      method: "PUT",
      body,
      headers: { "content-type": "application/octet-stream" },
    });
    if (res.status !== 201) throw await statusError(res, `${what} refused`, this.where);
    await discard(res);
    const said = res.headers.get("docker-content-digest");
    if (said && said !== digest)
      throw new IntegrityError(`${this.where}: ${what}: the registry stored ${said}, we sent ${digest}`);
  }

  /**
   * Where an upload stands (GET on its URL): the next byte the registry expects and the URL to
   * go on with; undefined when the registry no longer knows the upload (404).
   */
  private async uploadOffset(
    location: string,
    what: string,
  ): Promise<{ offset: number; location: string } | undefined> {
    const res = await this.fetch(location, { what, size: 0 });
    await discard(res);
    if (res.status === 404) return undefined;
    if (res.status !== 204 && res.status !== 200)
      throw await statusError(res, `cannot resume ${what}`, this.where);
    const m = /^0-(\d+)$/.exec(res.headers.get("range")?.trim() ?? "");
    // distribution says "0-0" for an empty upload as well as for one byte: taken as empty.
    const end = m ? Number(m[1]) : 0;
    return {
      offset: end === 0 ? 0 : end + 1,
      location: res.headers.get("location") ? this.nextLocation(res, what) : location,
    };
  }

  /** What the registry says it stored under `digest` (HEAD) must be that digest and size. */
  private async checkStored(digest: string, size: number, what: string): Promise<void> {
    const res = await this.fetch(`/blobs/${digest}`, { what, size: 0, method: "HEAD" });
    await discard(res);
    if (!res.ok) throw await statusError(res, `${what}: the registry lost the blob`, this.where);
    const said = res.headers.get("docker-content-digest");
    const length = res.headers.get("content-length");
    if ((said && said !== digest) || (length !== null && Number(length) !== size))
      throw new IntegrityError(
        `${this.where}: ${what}: the registry holds ${said ?? digest} of ${length} bytes, we sent ${size} bytes`,
      );
  }

  /**
   * PUTs a manifest or index under `reference` (a tag or its digest); returns its digest.
   * `onHeaders` sees the answer's headers (OCI-Subject says the registry indexed a referrer).
   */
  async putManifest(
    reference: string,
    mediaType: string,
    bytes: Buffer,
    onHeaders?: (h: Headers) => void,
  ): Promise<string> {
    const what = `manifest ${reference}`;
    const res = await this.fetch(`/manifests/${reference}`, {
      what,
      size: bytes.length,
      method: "PUT",
      body: bytes,
      headers: { "content-type": mediaType },
    });
    if (res.status !== 201) throw await statusError(res, `cannot push ${what}`, this.where);
    await discard(res);
    onHeaders?.(res.headers);
    const digest = digestOf(bytes);
    const said = res.headers.get("docker-content-digest");
    if (said && said !== digest)
      throw new IntegrityError(`${this.where}: ${what}: the registry stored ${said}, we sent ${digest}`);
    return digest;
  }

  private nextLocation(res: Response, what: string): string {
    const location = res.headers.get("location");
    if (!location) throw new EnvironmentError(`${this.where}: ${what}: the registry gave no upload location`);
    return new URL(location, this.auth.registryUrl).href;
  }
}

/**
 * The registry stored other bytes than those sent (a digest or a size that differs): the
 * environment's fault, but not one that trying again would mend.
 */
export class IntegrityError extends EnvironmentError {}

/** Attempts after the first for one upload request; the waits double from 250 ms up to 4 s. */
const UPLOAD_RETRIES = 4;
export function uploadBackoffMs(attempt: number): number {
  return Math.min(250 * 2 ** attempt, 4000);
}

/**
 * Per registry URL, per blob digest: the repositories this process pushed the blob to or found
 * it in. An upload to another repository of the same registry asks to mount it from those first.
 */
const knownBlobs = new Map<string, Map<string, Set<string>>>();

/** What a blob is made of: bytes, a file, or a sequence of those (a tar layer around files). */
/** A file part: `size` bytes from `offset` (default 0), e.g. one archive of a layered initramfs. */
export type BlobPart = { bytes: Buffer } | { file: string; size: number; offset?: number };
export type BlobSource = BlobPart | { parts: BlobPart[] };

const partSize = (p: BlobPart) => ("bytes" in p ? p.bytes.length : p.size);
function sourceSize(s: BlobSource): number {
  return "parts" in s ? s.parts.reduce((n, p) => n + partSize(p), 0) : partSize(s);
}

type ChunkReader = ((offset: number, length: number) => Promise<Buffer>) & { close(): Promise<void> };

/** Reads [offset, offset+length) of the source, across its parts; files are opened once each. */
async function chunkReader(source: BlobSource): Promise<ChunkReader> {
  const parts = "parts" in source ? source.parts : [source];
  const handles = new Map<string, FileHandle>();
  const close = async () => {
    for (const fh of handles.values()) await fh.close();
  };
  const readPart = async (p: BlobPart, o: number, n: number): Promise<Buffer> => {
    if ("bytes" in p) return p.bytes.subarray(o, o + n);
    let fh = handles.get(p.file);
    if (!fh) {
      fh = await open(p.file, "r");
      handles.set(p.file, fh);
    }
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, (p.offset ?? 0) + o);
    if (bytesRead !== n) throw new UserError(`${p.file}: changed while it was pushed`);
    return buf;
  };
  return Object.assign(
    async (offset: number, length: number) => {
      const out: Buffer[] = [];
      let start = 0;
      for (const p of parts) {
        const size = partSize(p);
        const from = Math.max(offset, start);
        const to = Math.min(offset + length, start + size);
        if (from < to) out.push(await readPart(p, from - start, to - from));
        start += size;
      }
      return out.length === 1 ? out[0]! : Buffer.concat(out);
    },
    { close },
  );
}
