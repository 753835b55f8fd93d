import { STATUS_CODES } from "node:http";
import { EnvironmentError, UserError } from "../../util/errors.js";

/**
 * fetch(), with network failures turned into one-line EnvironmentErrors that name the
 * reference (`where`) and, for TLS failures, hint at --insecure.
 */
export async function httpFetch(url: string, init: RequestInit, where: string): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    if (init.signal?.aborted) throw err;
    throw networkError(err, url, where);
  }
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
  const msg = `${where}: ${what}: ${statusLine(res)}${detail}`.replace(/\s*\n\s*/g, " ");
  return res.status >= 500 || res.status === 429 ? new EnvironmentError(msg) : new UserError(msg);
}
