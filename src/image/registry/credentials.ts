import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { EnvironmentError, UserError } from "../../util/errors.js";
import { readInputText } from "../../util/input-file.js";
import { readDocument } from "../schemas.js";
import { isDockerHub } from "./reference.js";

/**
 * Finding the user's registry credentials the way docker does: ~/.docker/config.json
 * (`$DOCKER_CONFIG`), its credHelpers and credsStore. What to do with them is auth.ts.
 */

/** What docker login left for a registry: a password, or an OAuth2 refresh ("identity") token. */
export interface Credentials {
  username: string;
  password: string;
  identityToken?: string;
  /** Where they came from, for messages. */
  source: string;
}

/** The key docker uses for Docker Hub in config.json and with credential helpers. */
const HUB_SERVER = "https://index.docker.io/v1/";

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
  if (!existsSync(file)) return undefined;
  // Through the input module: a FIFO or a device at $DOCKER_CONFIG must not hang a pull.
  const text = await readInputText(file, `${where}: ${file}`);
  const config = readDocument("dockerConfig", text, `${where}: ${file}`);
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
      let got: { Username?: string; Secret: string };
      try {
        got = readDocument("credentialHelperOutput", stdout, `${where}: ${command} get`);
      } catch (err) {
        // A helper's output is the environment's fault, not the user's input.
        reject(new EnvironmentError((err as Error).message));
        return;
      }
      const source = `credential helper ${command}`;
      // "<token>" as the user name marks an identity token (docker's convention).
      if (got.Username === "<token>")
        resolve({ username: "", password: "", identityToken: got.Secret, source });
      else resolve({ username: got.Username ?? "", password: got.Secret, source });
    });
    child.stdin.end(server);
  });
}
