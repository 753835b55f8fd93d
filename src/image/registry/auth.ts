import { EnvironmentError, UserError } from "../../util/errors.js";
import { readDocument } from "../schemas.js";
import type { Credentials } from "./credentials.js";
import { discard, type RequestOptions, readCapped, request, statusError, statusLine } from "./http.js";

/**
 * The registry's side of authentication: WWW-Authenticate challenges, Basic auth and the
 * Bearer token flow (docker's token spec, and the OAuth2 refresh grant for identity tokens).
 * Credentials travel only where they are safe: see mayCarryCredentials.
 */

/** One challenge of a WWW-Authenticate header; scheme is lower-case. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses `Bearer realm="...",service="...",scope="..."` (RFC 7235), including several
 * challenges in one header, quoted strings with backslash escapes and token68 values.
 */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const out: Challenge[] = [];
  let current: Challenge | undefined;
  let i = 0;
  const spaces = () => {
    while (header[i] === " " || header[i] === "\t") i++;
  };
  const token = (): string => {
    const m = /^[!#$%&'*+.^_`|~0-9A-Za-z/-]+/.exec(header.slice(i));
    i += m ? m[0].length : 0;
    return m ? m[0] : "";
  };
  const quoted = (): string => {
    let s = "";
    for (i++; i < header.length && header[i] !== '"'; i++) {
      if (header[i] === "\\" && i + 1 < header.length) i++;
      s += header[i];
    }
    i++; // closing quote
    return s;
  };
  while (i < header.length) {
    spaces();
    if (header[i] === ",") {
      i++;
      continue;
    }
    const name = token();
    if (!name) {
      i++; // a stray character: skip it rather than loop forever
      continue;
    }
    spaces();
    if (header[i] === "=") {
      const eqs = /^=+/.exec(header.slice(i))![0].length;
      const after = header.slice(i + eqs).trimStart();
      if (eqs > 1 || after === "" || after.startsWith(",")) {
        // token68 ("abc==") right after a scheme, e.g. Negotiate: kept under "".
        i += eqs;
        if (current) current.params[""] = name + "=".repeat(eqs);
        continue;
      }
      i++;
      spaces();
      const value = header[i] === '"' ? quoted() : token();
      if (current) current.params[name.toLowerCase()] = value;
      continue;
    }
    // A token not followed by "=" starts the next challenge.
    current = { scheme: name.toLowerCase(), params: {} };
    out.push(current);
  }
  return out;
}

/** Loopback hosts, where plain http never leaves the machine. */
export function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/**
 * Credentials (passwords, identity tokens, and tokens obtained with them) go over https, or
 * over plain http only to a loopback host and only with --insecure: a network path never
 * sees them in clear text.
 */
export function mayCarryCredentials(url: URL, insecure: boolean): boolean {
  return url.protocol === "https:" || (insecure && url.protocol === "http:" && isLoopback(url.hostname));
}

interface Token {
  header: string;
  expiresAt: number;
}

/** Token answers are small JSON; a megabyte is plenty. */
const MAX_TOKEN = 1 << 20;

export interface AuthOptions {
  /** The registry's API root, e.g. "https://host/v2/". */
  registryUrl: string;
  insecure: boolean;
  credentials: Credentials | undefined;
  /** The image reference, for messages. */
  where: string;
}

/**
 * Answers a registry's 401 challenges for one pull: Basic auth from the credentials, or the
 * Bearer token flow with tokens cached per scope. `fetch` retries once after a challenge.
 */
export class RegistryAuth {
  private basic = false;
  private readonly tokens = new Map<string, Token>();
  private readonly pending = new Map<string, Promise<string>>();
  private readonly registry: URL;
  private readonly where: string;
  /** The registry's API root, e.g. "https://host/v2/". */
  readonly registryUrl: string;

  constructor(private readonly o: AuthOptions) {
    this.registry = new URL(o.registryUrl);
    this.registryUrl = o.registryUrl;
    this.where = o.where;
  }

  /** GET `url` (on the registry) with whatever authorization the registry wants for `scope`. */
  async fetch(url: string, opts: Omit<RequestOptions, "where">, scope: string): Promise<Response> {
    const send = (auth: string | undefined) =>
      request(url, {
        ...opts,
        where: this.where,
        headers: { ...opts.headers, ...(auth ? { authorization: auth } : {}) },
      });
    let res = await send(this.cached(scope));
    if (res.status !== 401) return res;
    const header = res.headers.get("www-authenticate") ?? "";
    await discard(res);
    this.tokens.delete(scope); // expired, or never had one
    res = await send(await this.answer(header, scope, opts.signal));
    if (res.status === 401) {
      const again = res.headers.get("www-authenticate") ?? "";
      await discard(res);
      throw this.rejected(statusLine(res), again, scope);
    }
    return res;
  }

  private cached(scope: string): string | undefined {
    if (this.basic) return this.basicHeader(this.registry);
    const token = this.tokens.get(scope);
    return token && token.expiresAt > Date.now() ? token.header : undefined;
  }

  /** Refuses (one line) to let the user's credentials, or what they buy, go to `url` in clear text. */
  private checkCarrier(url: URL): void {
    if (mayCarryCredentials(url, this.o.insecure)) return;
    throw new UserError(
      `${this.where}: refusing to send the credentials from ${this.o.credentials!.source} over plain http to ${url.host} (only https, or a loopback registry with --insecure)`,
    );
  }

  private basicHeader(to: URL): string | undefined {
    const c = this.o.credentials;
    if (!c || c.identityToken) return undefined;
    this.checkCarrier(to);
    return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString("base64")}`;
  }

  private async answer(header: string, scope: string, signal?: AbortSignal): Promise<string> {
    const challenges = parseWwwAuthenticate(header);
    const bearer = challenges.find((c) => c.scheme === "bearer");
    if (bearer) {
      let p = this.pending.get(scope);
      if (!p) {
        p = this.fetchToken(bearer.params, scope, signal).finally(() => this.pending.delete(scope));
        this.pending.set(scope, p);
      }
      return p;
    }
    if (challenges.some((c) => c.scheme === "basic")) {
      const basic = this.basicHeader(this.registry);
      if (!basic) throw this.rejected("401 Unauthorized", "", scope);
      this.basic = true;
      return basic;
    }
    const shown = header.replace(/[^\x20-\x7e]/g, "?").slice(0, 200);
    throw new UserError(`${this.where}: registry asks for unsupported authentication "${shown || "(none)"}"`);
  }

  private async fetchToken(params: Record<string, string>, ourScope: string, signal?: AbortSignal) {
    let realm: URL;
    try {
      realm = new URL(params.realm ?? "");
      if (realm.protocol !== "https:" && realm.protocol !== "http:") throw new Error("not http(s)");
    } catch {
      throw new UserError(`${this.where}: registry sent a Bearer challenge without a usable realm`);
    }
    // A realm may live on another host (docker sends credentials there too), but an https
    // registry never hands us to plain http: that would put the password on the wire.
    if (this.registry.protocol === "https:" && realm.protocol === "http:") {
      throw new UserError(
        `${this.where}: refusing token realm ${realm.origin}: plain http from an https registry (a downgrade)`,
      );
    }
    const scope = params.scope ?? ourScope;
    const c = this.o.credentials;
    if (c) {
      // The token bought with the credentials is as secret as they are.
      this.checkCarrier(realm);
      this.checkCarrier(this.registry);
    }
    const what = `token from ${realm.host}`;
    let res: Response;
    if (c?.identityToken) {
      // OAuth2 refresh-token grant, as docker does for identity tokens.
      const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: c.identityToken });
      form.set("client_id", "slimroot");
      if (params.service) form.set("service", params.service);
      form.set("scope", scope);
      res = await request(realm.href, {
        where: this.where,
        what,
        size: MAX_TOKEN,
        method: "POST",
        body: form,
        signal,
      });
    } else {
      if (params.service) realm.searchParams.set("service", params.service);
      realm.searchParams.set("scope", scope);
      const basic = this.basicHeader(realm);
      res = await request(realm.href, {
        where: this.where,
        what,
        size: MAX_TOKEN,
        headers: basic ? { authorization: basic } : {},
        signal,
      });
    }
    if (res.status === 401 || res.status === 403) {
      await discard(res);
      throw this.rejected(statusLine(res), "", ourScope);
    }
    if (!res.ok) throw await statusError(res, `token request to ${realm.host}`, this.where);
    const bytes = await readCapped(res, MAX_TOKEN, what, this.where);
    let body: { token?: string; access_token?: string; expires_in?: number };
    try {
      body = readDocument("tokenResponse", bytes, `${this.where}: ${what}`);
    } catch (err) {
      throw new EnvironmentError((err as Error).message);
    }
    const token = body.token || body.access_token;
    if (!token) throw new EnvironmentError(`${this.where}: ${what}: the answer holds no token`);
    if (/[^\x21-\x7e]/.test(token))
      throw new EnvironmentError(`${this.where}: ${what}: the token holds characters a header cannot carry`);
    // The spec's default lifetime is 60 s; keep a margin so a token does not expire mid-request.
    const lifetime =
      (typeof body.expires_in === "number" && body.expires_in > 0 ? body.expires_in : 60) * 1000;
    const header = `Bearer ${token}`;
    this.tokens.set(ourScope, { header, expiresAt: Date.now() + lifetime - 5000 });
    return header;
  }

  /** The one-line error for a registry that refused us what `scope` (repository:NAME:ACTIONS) asks. */
  private rejected(status: string, header: string, scope: string): UserError {
    const user = this.o.credentials?.username;
    const error = parseWwwAuthenticate(header).find((c) => c.params.error)?.params.error;
    if (error === "insufficient_scope") {
      const who = user ? `user ${user}` : "anonymous users";
      const pushing = scope.split(":").at(-1)?.split(",").includes("push");
      return new UserError(
        `${this.where}: access denied (${status}): the repository does not exist or ${who} may not ${pushing ? "push to" : "pull"} it`,
      );
    }
    if (this.o.credentials) {
      const who = user ? `for user ${user}` : `with the identity token from ${this.o.credentials.source}`;
      return new UserError(`${this.where}: authentication failed (${status}) ${who}`);
    }
    return new UserError(
      `${this.where}: authentication required (${status}); no credentials for ${this.registry.host} (run docker login ${this.registry.host})`,
    );
  }
}
