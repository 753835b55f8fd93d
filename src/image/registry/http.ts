import { STATUS_CODES } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { EnvironmentError, UserError } from "../../util/errors.js";

/**
 * Every registry request goes through `request`: bounded in time (a stall timeout and an
 * overall deadline from the body's size), retried on 429 within bounds, and redirected by
 * hand so that an Authorization header never follows a redirect to another origin.
 */

export interface RequestLimits {
  /** No byte (or no answer) for this long fails the request. */
  stallMs: number;
  /** The slowest average rate accepted: a body of N bytes must arrive within stall + N / minRate s. */
  minRate: number;
}

const DEFAULT_STALL_S = 30;
const DEFAULT_MIN_RATE = 16 * 1024;
/** 429 handling: this many retries, each waiting what Retry-After says, but never longer than this. */
const MAX_RETRIES = 3;
const MAX_RETRY_WAIT_S = 60;
const MAX_REDIRECTS = 5;

/** SLIMROOT_STALL_TIMEOUT (seconds) and SLIMROOT_MIN_RATE (bytes/s) override the defaults. */
export function requestLimits(env: NodeJS.ProcessEnv = process.env): RequestLimits {
  const num = (name: string, fallback: number) => {
    const text = env[name];
    if (text === undefined || text === "") return fallback;
    const n = Number(text);
    if (!Number.isFinite(n) || n <= 0) throw new UserError(`${name}=${text}: expected a positive number`);
    return n;
  };
  return {
    stallMs: num("SLIMROOT_STALL_TIMEOUT", DEFAULT_STALL_S) * 1000,
    minRate: num("SLIMROOT_MIN_RATE", DEFAULT_MIN_RATE),
  };
}

export interface RequestOptions {
  /** The image reference, first in every message. */
  where: string;
  /** What is being fetched, for messages: "manifest v1", "blob sha256:...", "token". */
  what: string;
  /** The most bytes the body may hold: sets the overall deadline. */
  size: number;
  method?: string;
  headers?: Record<string, string>;
  /** A form (token requests) or bytes (uploads); either can be sent again after a 401. */
  body?: URLSearchParams | Uint8Array | undefined;
  signal?: AbortSignal | undefined;
}

const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;

/** Races `p` against a timer; on expiry calls `expire` and rejects with what it returns. */
async function within<T>(p: Promise<T>, ms: number, expire: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(expire()), Math.max(0, ms));
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); undefined if absent. */
export function retryAfterSeconds(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - now) / 1000);
}

/**
 * GET (or POST) `url`. The answer's body, when read, fails with one line naming the
 * reference and `what` if it stalls or comes too slowly. 429s are retried after Retry-After.
 */
export async function request(url: string, opts: RequestOptions): Promise<Response> {
  const limits = requestLimits();
  for (let attempt = 0; ; attempt++) {
    const res = await requestOnce(url, opts, limits);
    if (res.status !== 429 || attempt >= MAX_RETRIES) return res;
    const wait = retryAfterSeconds(res.headers.get("retry-after")) ?? 2 ** attempt;
    if (wait > MAX_RETRY_WAIT_S) return res;
    await discard(res);
    try {
      await sleep(wait * 1000, undefined, { signal: opts.signal });
    } catch (err) {
      throw opts.signal?.reason ?? err;
    }
  }
}

async function requestOnce(url: string, opts: RequestOptions, limits: RequestLimits): Promise<Response> {
  const { where, what } = opts;
  const start = Date.now();
  const deadline = start + limits.stallMs + (opts.size / limits.minRate) * 1000;
  const controller = new AbortController();
  const stop = () => controller.abort();
  opts.signal?.addEventListener("abort", stop, { once: true });
  const outerAborted = () => opts.signal?.aborted === true;
  let current = new URL(url);
  let method = opts.method ?? "GET";
  let body = opts.body;
  let headers = { ...opts.headers };
  /** Waits for the next event (the answer, or a chunk of the body): the stall timeout, or less near the deadline. */
  const next = <T>(p: Promise<T>, received: number | undefined): Promise<T> => {
    const untilDeadline = deadline - Date.now();
    const slow = untilDeadline < limits.stallMs;
    return within(p, slow ? untilDeadline : limits.stallMs, () =>
      slow ? tooSlow(received ?? 0) : stalled(received),
    );
  };
  const tooSlow = (received: number) =>
    new EnvironmentError(
      `${where}: ${what} too slow: ${received} bytes in ${seconds(Date.now() - start)} from ${current.host}, below SLIMROOT_MIN_RATE (${limits.minRate} bytes/s)`,
    );
  // The caller aborts the request after the race is lost (aborting first would let the
  // fetch's own AbortError win the race and hide what stalled).
  const stalled = (received: number | undefined) =>
    received === undefined
      ? new EnvironmentError(
          `${where}: ${what}: no answer from ${current.host} for ${seconds(limits.stallMs)} (SLIMROOT_STALL_TIMEOUT)`,
        )
      : new EnvironmentError(
          `${where}: ${what} stalled: no data from ${current.host} for ${seconds(limits.stallMs)} after ${received} bytes (SLIMROOT_STALL_TIMEOUT)`,
        );

  try {
    for (let hop = 0; ; hop++) {
      let res: Response;
      try {
        res = await next(
          fetch(current, {
            method,
            headers,
            redirect: "manual",
            signal: controller.signal,
            ...(body ? { body: body as BodyInit } : {}),
          }),
          undefined,
        );
      } catch (err) {
        if (outerAborted()) throw opts.signal!.reason ?? err;
        if (err instanceof EnvironmentError || err instanceof UserError) throw err;
        throw networkError(err, current.href, where);
      }
      const location = res.headers.get("location");
      if ([301, 302, 303, 307, 308].includes(res.status) && location) {
        await discard(res);
        if (hop >= MAX_REDIRECTS) throw new EnvironmentError(`${where}: ${what}: too many redirects`);
        const target = new URL(location, current);
        if (target.protocol !== "https:" && target.protocol !== "http:")
          throw new UserError(`${where}: ${what}: redirect to unsupported URL ${target.protocol}`);
        if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === "POST")) {
          method = "GET";
          body = undefined;
        }
        // Credentials are for the origin they were meant for: never let them follow elsewhere
        // (the header is dropped; a form body, which may hold a refresh token, is not re-sent).
        if (target.origin !== current.origin) {
          if (body)
            throw new UserError(`${where}: ${what}: refusing to re-send the request to ${target.host}`);
          const { authorization: _dropped, ...rest } = headers;
          headers = rest;
        }
        current = target;
        continue;
      }
      return guardBody(res);
    }
  } catch (err) {
    controller.abort();
    throw err;
  }

  /** The body, read with the stall timer and the deadline; errors name the reference and `what`. */
  function guardBody(res: Response): Response {
    if (!res.body) return res;
    const reader = res.body.getReader();
    let received = 0;
    const guarded = new ReadableStream<Uint8Array>({
      async pull(out) {
        try {
          const chunk = await next(reader.read(), received);
          if (chunk.done) {
            opts.signal?.removeEventListener("abort", stop);
            out.close();
            return;
          }
          received += chunk.value.byteLength;
          out.enqueue(chunk.value);
        } catch (err) {
          controller.abort();
          reader.cancel().catch(() => {});
          if (outerAborted()) out.error(opts.signal!.reason ?? err);
          else if (err instanceof EnvironmentError || err instanceof UserError) out.error(err);
          else
            out.error(
              new EnvironmentError(
                `${where}: reading ${what} from ${current.host} failed: ${describeCause(err)}`,
              ),
            );
        }
      },
      cancel(reason) {
        controller.abort();
        return reader.cancel(reason).catch(() => {});
      },
    });
    return new Response(guarded, { status: res.status, statusText: res.statusText, headers: res.headers });
  }
}

function describeCause(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause ?? err;
  const code = (cause as NodeJS.ErrnoException).code;
  const msg = cause instanceof Error ? cause.message : String(cause);
  return `${code ? `${code} ` : ""}${msg}`.replace(/\s+/g, " ").trim();
}

function networkError(err: unknown, url: string, where: string): EnvironmentError {
  // undici reports "fetch failed" and keeps the real reason in `cause`.
  const cause = (err as { cause?: unknown }).cause ?? err;
  const code = (cause as NodeJS.ErrnoException).code ?? "";
  // OpenSSL errors carry a short `reason`; their message is a multi-line dump.
  const reason = (cause as { reason?: unknown }).reason;
  const msg = (typeof reason === "string" ? reason : cause instanceof Error ? cause.message : String(cause))
    .replace(/\s+/g, " ")
    .trim();
  const host = new URL(url).host;
  if (code === "ECONNREFUSED")
    return new EnvironmentError(`${where}: cannot connect to ${host} (connection refused)`);
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") {
    return new EnvironmentError(`${where}: cannot resolve host ${new URL(url).hostname} (${code})`);
  }
  if (/SSL|TLS|CERT|certificate/i.test(`${code} ${msg}`)) {
    const hint = url.startsWith("https:") ? "; for a plain-http registry use --insecure" : "";
    return new EnvironmentError(`${where}: TLS error talking to ${host}: ${msg}${hint}`);
  }
  return new EnvironmentError(`${where}: request to ${host} failed: ${code || msg}`);
}

export function statusLine(res: Response): string {
  return `${res.status} ${STATUS_CODES[res.status] ?? res.statusText}`.trim();
}

/** Reads at most `max` bytes of a body, failing beyond that: registries' JSON can be trusted only so far. */
export async function readCapped(res: Response, max: number, what: string, where: string): Promise<Buffer> {
  const length = Number(res.headers.get("content-length") ?? Number.NaN);
  if (length > max) {
    await discard(res);
    throw new UserError(`${where}: ${what} is too large (${length} bytes)`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  if (res.body) {
    for await (const chunk of res.body) {
      total += chunk.byteLength;
      if (total > max) throw new UserError(`${where}: ${what} is too large (over ${max} bytes)`);
      chunks.push(Buffer.from(chunk));
    }
  }
  return Buffer.concat(chunks);
}

/** Drops a body we do not want, so the connection can be reused. */
export async function discard(res: Response): Promise<void> {
  try {
    await res.body?.cancel();
  } catch {
    // Nothing to do: the body is unwanted anyway.
  }
}

/**
 * A one-line error for an unexpected HTTP status, with the registry's own error message
 * when it sent one. 5xx and 429 are the environment's fault; other answers are the user's.
 */
export async function statusError(res: Response, what: string, where: string): Promise<Error> {
  let detail = "";
  try {
    const body = JSON.parse((await readCapped(res, 64 * 1024, "error body", where)).toString("utf8")) as {
      errors?: { code?: string; message?: string }[];
    };
    const first = body.errors?.[0];
    if (first?.message || first?.code) detail = `: ${first.message ?? first.code}`;
  } catch {
    // Not a registry error document; the status says enough.
  }
  const retry = res.status === 429 ? retryAfterSeconds(res.headers.get("retry-after")) : undefined;
  if (retry !== undefined) detail += ` (retry after ${Math.ceil(retry)} s)`;
  const msg = `${where}: ${what}: ${statusLine(res)}${detail}`.replace(/\s*\n\s*/g, " ");
  return res.status >= 500 || res.status === 429 ? new EnvironmentError(msg) : new UserError(msg);
}
