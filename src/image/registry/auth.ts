import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { EnvironmentError, UserError } from "../../util/errors.js";
import { discard, httpFetch, readCapped, statusError, statusLine } from "./http.js";
import { isDockerHub } from "./reference.js";

/** What docker login left for a registry: a password, or an OAuth2 refresh ("identity") token. */
export interface Credentials {
  username: string;
  password: string;
  identityToken?: string;
  /** Where they came from, for messages. */
  source: string;
}

/** One challenge of a WWW-Authenticate header; scheme is lower-case. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** The key docker uses for Docker Hub in config.json and with credential helpers. */
const HUB_SERVER = "https://index.docker.io/v1/";

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

function dockerConfigFile(env: NodeJS.ProcessEnv): string {
  return join(env.DOCKER_CONFIG || join(homedir(), ".docker"), "config.json");
}

/** config.json keys may be "host", "https://host" or "https://host/v1/": compare by host only. */
function keyHost(key: string): string {
  return key
    .replace(/^[a-z]+:\/\//i, "")
    .split("/")[0]!
    .toLowerCase();
}

function matchesRegistry(key: string, registry: string): boolean {
  const host = keyHost(key);
  return isDockerHub(registry) ? isDockerHub(host) : host === registry.toLowerCase();
}

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

/**
 * Looks up credentials for `registry` the way docker does: a credHelpers entry, then an
 * inline `auths` entry, then the default credsStore. `$DOCKER_CONFIG` moves the file.
 */
export async function loadCredentials(
  registry: string,
  where: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Credentials | undefined> {
  const file = dockerConfigFile(env);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new EnvironmentError(`${where}: cannot read ${file}: ${(err as Error).message}`);
  }
  let config: DockerConfig;
  try {
    config = JSON.parse(text) as DockerConfig;
  } catch {
    throw new UserError(`${where}: ${file} is not valid JSON`);
  }
  const server = isDockerHub(registry) ? HUB_SERVER : registry;

  const helper = Object.entries(config.credHelpers ?? {}).find(([k]) => matchesRegistry(k, registry))?.[1];
  if (helper) return runHelper(helper, server, where, env);

  const entry = Object.entries(config.auths ?? {}).find(([k]) => matchesRegistry(k, registry))?.[1];
  if (entry?.auth) {
    const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) throw new UserError(`${where}: ${file}: auth for ${registry} is not base64 user:password`);
    return {
      username: decoded.slice(0, colon),
      password: decoded.slice(colon + 1),
      ...(entry.identitytoken ? { identityToken: entry.identitytoken } : {}),
      source: file,
    };
  }
  if (entry?.username && entry.password !== undefined) {
    return { username: entry.username, password: entry.password, source: file };
  }
  if (entry?.identitytoken) {
    return { username: entry.username ?? "", password: "", identityToken: entry.identitytoken, source: file };
  }
  if (config.credsStore) return runHelper(config.credsStore, server, where, env);
  return undefined;
}

/** Runs `docker-credential-NAME get`; "not found" means no credentials, anything else fails. */
function runHelper(
  name: string,
  server: string,
  where: string,
  env: NodeJS.ProcessEnv,
): Promise<Credentials | undefined> {
  const command = `docker-credential-${name}`;
  return new Promise((resolve, reject) => {
    const child = spawn(command, ["get"], { stdio: ["pipe", "pipe", "pipe"], env });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.stdin.on("error", () => {
      // EPIPE if the helper exits without reading; its exit status tells the story.
    });
    child.on("error", (err) => {
      const why = (err as NodeJS.ErrnoException).code === "ENOENT" ? "not found in PATH" : err.message;
      reject(new EnvironmentError(`${where}: credential helper ${command} ${why}`));
    });
    child.on("close", (code) => {
      const said = `${stdout} ${stderr}`.trim().replace(/\s+/g, " ");
      if (code !== 0) {
        // The helper protocol signals "no credentials" with this message on stdout.
        if (/credentials not found/i.test(said)) resolve(undefined);
        else
          reject(new EnvironmentError(`${where}: ${command} get failed: ${said || `exit status ${code}`}`));
        return;
      }
      try {
        const got = JSON.parse(stdout) as { Username?: string; Secret?: string };
        if (typeof got.Secret !== "string") throw new Error("no Secret");
        const source = `credential helper ${command}`;
        // "<token>" as the user name marks an identity token (docker's convention).
        if (got.Username === "<token>")
          resolve({ username: "", password: "", identityToken: got.Secret, source });
        else resolve({ username: got.Username ?? "", password: got.Secret, source });
      } catch {
        reject(
          new EnvironmentError(`${where}: ${command} get printed something that is not credentials JSON`),
        );
      }
    });
    child.stdin.end(server);
  });
}

interface Token {
  header: string;
  expiresAt: number;
}

/**
 * Answers a registry's 401 challenges for one pull: Basic auth from the credentials, or the
 * Bearer token flow with tokens cached per scope. `fetch` retries once after a challenge.
 */
export class RegistryAuth {
  private basic = false;
  private readonly tokens = new Map<string, Token>();
  private readonly pending = new Map<string, Promise<string>>();

  constructor(
    private readonly registry: string,
    private readonly credentials: Credentials | undefined,
    private readonly where: string,
  ) {}

  /** GET/HEAD `url` with whatever authorization the registry wants for `scope`. */
  async fetch(url: string, init: RequestInit & { headers?: Record<string, string> }, scope: string) {
    const send = (auth: string | undefined) =>
      httpFetch(
        url,
        { ...init, headers: { ...init.headers, ...(auth ? { authorization: auth } : {}) } },
        this.where,
      );
    let res = await send(this.cached(scope));
    if (res.status !== 401) return res;
    const header = res.headers.get("www-authenticate") ?? "";
    await discard(res);
    this.tokens.delete(scope); // expired, or never had one
    res = await send(await this.answer(header, scope, init.signal));
    if (res.status === 401) {
      const again = res.headers.get("www-authenticate") ?? "";
      await discard(res);
      throw this.rejected(statusLine(res), again);
    }
    return res;
  }

  private cached(scope: string): string | undefined {
    if (this.basic) return this.basicHeader();
    const token = this.tokens.get(scope);
    return token && token.expiresAt > Date.now() ? token.header : undefined;
  }

  private basicHeader(): string | undefined {
    const c = this.credentials;
    if (!c || c.identityToken) return undefined;
    return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString("base64")}`;
  }

  private async answer(header: string, scope: string, signal?: AbortSignal | null): Promise<string> {
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
      const basic = this.basicHeader();
      if (!basic) throw this.rejected("401 Unauthorized", "");
      this.basic = true;
      return basic;
    }
    throw new UserError(
      `${this.where}: registry asks for unsupported authentication "${header || "(none)"}"`,
    );
  }

  private async fetchToken(params: Record<string, string>, ourScope: string, signal?: AbortSignal | null) {
    const realm = params.realm;
    if (!realm || !/^https?:\/\//.test(realm)) {
      throw new UserError(`${this.where}: registry sent a Bearer challenge without a usable realm`);
    }
    const scope = params.scope ?? ourScope;
    const c = this.credentials;
    let res: Response;
    if (c?.identityToken) {
      // OAuth2 refresh-token grant, as docker does for identity tokens.
      const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: c.identityToken });
      form.set("client_id", "slimroot");
      if (params.service) form.set("service", params.service);
      form.set("scope", scope);
      res = await httpFetch(realm, { method: "POST", body: form, signal: signal ?? null }, this.where);
    } else {
      const url = new URL(realm);
      if (params.service) url.searchParams.set("service", params.service);
      url.searchParams.set("scope", scope);
      const basic = this.basicHeader();
      res = await httpFetch(
        url.href,
        { headers: basic ? { authorization: basic } : {}, signal: signal ?? null },
        this.where,
      );
    }
    if (res.status === 401 || res.status === 403) {
      await discard(res);
      throw this.rejected(statusLine(res), "");
    }
    if (!res.ok) throw await statusError(res, `token request to ${new URL(realm).host}`, this.where);
    let body: { token?: string; access_token?: string; expires_in?: number };
    try {
      body = JSON.parse((await readCapped(res, 1 << 20, "token", this.where)).toString("utf8"));
    } catch (err) {
      if (err instanceof UserError) throw err;
      throw new EnvironmentError(`${this.where}: token server ${new URL(realm).host} sent invalid JSON`);
    }
    const token = body.token || body.access_token;
    if (!token)
      throw new EnvironmentError(`${this.where}: token server ${new URL(realm).host} sent no token`);
    // The spec's default lifetime is 60 s; keep a margin so a token does not expire mid-request.
    const lifetime =
      (typeof body.expires_in === "number" && body.expires_in > 0 ? body.expires_in : 60) * 1000;
    const header = `Bearer ${token}`;
    this.tokens.set(ourScope, { header, expiresAt: Date.now() + lifetime - 5000 });
    return header;
  }

  /** The one-line error for a registry that refused us. */
  private rejected(status: string, header: string): UserError {
    const user = this.credentials?.username;
    const error = parseWwwAuthenticate(header).find((c) => c.params.error)?.params.error;
    if (error === "insufficient_scope") {
      const who = user ? `user ${user}` : "anonymous users";
      return new UserError(
        `${this.where}: access denied (${status}): the repository does not exist or ${who} may not pull it`,
      );
    }
    if (this.credentials) {
      const who = user ? `for user ${user}` : `with the identity token from ${this.credentials.source}`;
      return new UserError(`${this.where}: authentication failed (${status}) ${who}`);
    }
    return new UserError(
      `${this.where}: authentication required (${status}); no credentials for ${this.registry} (run docker login ${this.registry})`,
    );
  }
}
