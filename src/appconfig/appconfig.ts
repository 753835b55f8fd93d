import { DEFAULT_PATH, SLIMROOT_DIR } from "../guest/layout.js";
import type { ImageConfig } from "../image/types.js";
import { UserError } from "../util/errors.js";

/** Where every image carries its run settings (see docs/app-config.md). */
export const APP_CONFIG_PATH = `${SLIMROOT_DIR}/app.conf`;

/** The resolved run settings the guest init reads. */
export interface AppConfig {
  args: string[];
  env: string[];
  workdir: string;
  uid: number;
  gid: number;
  groups: number[];
  /** The User string as configured, for people reading the image. */
  user?: string;
  ports: string[];
  hostname?: string;
}

/** What the user may change on the command line. */
export interface ConfigOverrides {
  entrypoint?: string;
  /** Replaces Cmd. */
  cmd?: string[];
  /** K=V entries applied over the image's Env. */
  env?: string[];
  workdir?: string;
  user?: string;
}

/** The image's /etc/passwd and /etc/group texts, when it has them. */
export interface UserDatabase {
  passwd?: string;
  group?: string;
}

function setEnv(env: string[], entry: string): string[] {
  const key = entry.slice(0, entry.indexOf("="));
  return [...env.filter((e) => e.slice(0, e.indexOf("=")) !== key), entry];
}

function envHas(env: string[], key: string): boolean {
  return env.some((e) => e.startsWith(`${key}=`));
}

/**
 * Combines the image config with overrides the way `docker run` does: --entrypoint drops the
 * image's Cmd, arguments replace Cmd, -e adds or replaces, PATH gets a default, HOME comes
 * from the user's passwd entry. Names in User are resolved in the image's own files.
 */
export function resolveAppConfig(image: ImageConfig, o: ConfigOverrides, db: UserDatabase): AppConfig {
  const entrypoint =
    o.entrypoint !== undefined ? (o.entrypoint ? [o.entrypoint] : []) : (image.entrypoint ?? []);
  const cmd = o.cmd ?? (o.entrypoint !== undefined ? [] : (image.cmd ?? []));
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) {
    throw new UserError(
      "no command to run: the image has no Entrypoint or Cmd; give --entrypoint or a command after --",
    );
  }
  let env = [...(image.env ?? [])];
  for (const e of o.env ?? []) {
    if (!e.includes("=") || e.startsWith("=")) throw new UserError(`-e ${e}: expected NAME=VALUE`);
    env = setEnv(env, e);
  }
  if (!envHas(env, "PATH")) env = [`PATH=${DEFAULT_PATH}`, ...env];
  const workdir = o.workdir ?? image.workingDir ?? "/";
  if (!workdir.startsWith("/")) throw new UserError(`working directory ${workdir}: must be an absolute path`);
  const user = o.user ?? image.user;
  const ids = resolveUser(user, db);
  if (!envHas(env, "HOME")) env.push(`HOME=${ids.home}`);
  return {
    args,
    env,
    workdir,
    uid: ids.uid,
    gid: ids.gid,
    groups: ids.groups,
    ...(user ? { user } : {}),
    ports: image.exposedPorts ?? [],
  };
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

function parseDb(text: string | undefined): string[][] {
  return (text ?? "")
    .split("\n")
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => l.split(":"));
}

const isNumeric = (s: string) => /^\d+$/.test(s);

export function resolveUser(
  user: string | undefined,
  db: UserDatabase,
): { uid: number; gid: number; groups: number[]; home: string } {
  const passwd: PasswdEntry[] = parseDb(db.passwd)
    .filter((f) => f.length >= 4 && isNumeric(f[2]!) && isNumeric(f[3]!))
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5] || "/" }));
  const groups = parseDb(db.group)
    .filter((f) => f.length >= 3 && isNumeric(f[2]!))
    .map((f) => ({ name: f[0]!, gid: Number(f[2]), members: (f[3] ?? "").split(",").filter(Boolean) }));
  if (!user) return { uid: 0, gid: 0, groups: [], home: passwd.find((p) => p.uid === 0)?.home ?? "/root" };

  const [userPart, groupPart] = user.split(":", 2) as [string, string | undefined];
  let entry: PasswdEntry | undefined;
  let uid: number;
  if (isNumeric(userPart)) {
    uid = Number(userPart);
    entry = passwd.find((p) => p.uid === uid);
  } else {
    entry = passwd.find((p) => p.name === userPart);
    if (!entry) throw new UserError(`user ${userPart}: not found in the image's /etc/passwd`);
    uid = entry.uid;
  }
  let gid = entry?.gid ?? 0;
  if (groupPart !== undefined && groupPart !== "") {
    if (isNumeric(groupPart)) gid = Number(groupPart);
    else {
      const g = groups.find((x) => x.name === groupPart);
      if (!g) throw new UserError(`group ${groupPart}: not found in the image's /etc/group`);
      gid = g.gid;
    }
  }
  // Supplementary groups only come from the user's name, and only when no group was forced.
  const supplementary =
    entry && groupPart === undefined
      ? groups.filter((g) => g.members.includes(entry!.name) && g.gid !== gid).map((g) => g.gid)
      : [];
  return { uid, gid, groups: [...new Set(supplementary)].sort((a, b) => a - b), home: entry?.home ?? "/" };
}

/**
 * A value as the line formats of app.conf, run.conf and trace profiles write it: `\\` for a
 * backslash and `\n` for a newline, so any value but one holding NUL fits on its line.
 */
export function escapeConfValue(v: string, what = "argument or variable"): string {
  if (v.includes("\0")) throw new UserError(`${what} ${JSON.stringify(v)} contains a NUL byte`);
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

export function unescapeConfValue(v: string): string {
  return v.replace(/\\([\\n])/g, (_, c: string) => (c === "n" ? "\n" : "\\"));
}

/** The text of /etc/slimroot/app.conf. */
export function encodeAppConfig(c: AppConfig): string {
  const lines = ["# slimroot app config (docs/app-config.md)", "version 1"];
  for (const a of c.args) lines.push(`arg ${escapeConfValue(a)}`);
  for (const e of c.env) lines.push(`env ${escapeConfValue(e)}`);
  lines.push(
    `workdir ${escapeConfValue(c.workdir)}`,
    `uid ${c.uid}`,
    `gid ${c.gid}`,
    `groups ${c.groups.join(",")}`,
  );
  if (c.user) lines.push(`user ${escapeConfValue(c.user)}`);
  for (const p of c.ports) lines.push(`port ${escapeConfValue(p)}`);
  if (c.hostname) lines.push(`hostname ${escapeConfValue(c.hostname)}`);
  return `${lines.join("\n")}\n`;
}

export function decodeAppConfig(text: string): AppConfig {
  const c: AppConfig = { args: [], env: [], workdir: "/", uid: 0, gid: 0, groups: [], ports: [] };
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const sp = line.indexOf(" ");
    const key = sp < 0 ? line : line.slice(0, sp);
    const value = sp < 0 ? "" : unescapeConfValue(line.slice(sp + 1));
    if (key === "arg") c.args.push(value);
    else if (key === "env") c.env.push(value);
    else if (key === "workdir") c.workdir = value;
    else if (key === "uid") c.uid = Number(value);
    else if (key === "gid") c.gid = Number(value);
    else if (key === "groups") c.groups = value ? value.split(",").map(Number) : [];
    else if (key === "user") c.user = value;
    else if (key === "port") c.ports.push(value);
    else if (key === "hostname") c.hostname = value;
  }
  return c;
}
