import type { AppConfig } from "../appconfig/appconfig.js";
import { SCRATCH_DIRS } from "../guest/layout.js";
import { bufferContent } from "../tree/spool.js";
import { dirInode, SLIMROOT_LAYER, type Tree } from "../tree/tree.js";
import { keepNssModules } from "./nss.js";
import { globMatcher, type Selection } from "./selection.js";

/** Files a minimal image usually forgets, kept when the image has them (each with why below). */
const QUIET_NEEDS: [string, string][] = [
  ["etc/passwd", "users: getpwnam and friends"],
  ["etc/group", "groups: getgrnam and friends"],
  ["etc/nsswitch.conf", "NSS configuration"],
  ["etc/hosts", "name resolution"],
  ["etc/resolv.conf", "name resolution"],
  ["etc/host.conf", "name resolution"],
  ["etc/gai.conf", "getaddrinfo ordering"],
  ["etc/localtime", "time zone"],
  ["etc/timezone", "time zone"],
  ["etc/ssl/certs/ca-certificates.crt", "TLS roots (CA bundle)"],
  ["etc/pki/tls/certs/ca-bundle.crt", "TLS roots (CA bundle)"],
  ["etc/ssl/cert.pem", "TLS roots (CA bundle)"],
  ["etc/ld.so.cache", "dynamic loader cache"],
  ["etc/ld.so.conf", "dynamic loader search path"],
];

/** Directories whose subdirectories apps write into; kept, empty. */
const RUNTIME_DIR_ROOTS = ["var/lib", "var/log", "var/cache", "run", "var/run", "var/tmp"];

export interface RuleContext {
  tree: Tree;
  app: AppConfig;
  /** Adds a path and, if it is an ELF or script, its closure; follows symlink chains. */
  keepWithClosure(path: string, reason: string): Promise<void>;
}

/**
 * The rules every minimized image gets, each with its reason: users and groups (made up
 * for the configured user when the image has none), NSS and the modules it dlopens, name
 * resolution files, CA bundle, time zone, /tmp and /run, and the image's runtime directories
 * kept empty.
 */
export async function applyRules(ctx: RuleContext, sel: Selection, epoch: number): Promise<void> {
  const { tree } = ctx;
  for (const [path, reason] of QUIET_NEEDS) {
    if (tree.get(path)) await ctx.keepWithClosure(path, `rule: ${reason}`);
  }
  for (const { path: confPath } of tree.walk("etc/ld.so.conf.d")) {
    if (confPath.endsWith(".conf")) sel.add(confPath, "rule: dynamic loader search path");
  }

  if (!tree.get("etc/passwd") || !tree.get("etc/group")) addMinimalUserDb(ctx, sel, epoch);

  await keepNssModules(ctx);

  for (const root of RUNTIME_DIR_ROOTS) {
    const node = tree.get(root);
    if (!node?.children) continue;
    for (const { path, inode } of tree.walk(root)) {
      if (inode.kind === "dir") sel.add(path, "rule: runtime directory the app may write into (kept empty)");
    }
  }
  for (const [path, mode] of SCRATCH_DIRS) {
    if (!tree.get(path))
      tree.set(path, { inode: dirInode(mode, 0, 0, epoch), children: new Map(), layer: SLIMROOT_LAYER });
    sel.add(path, "rule: scratch directory (a tmpfs at boot when it is empty)");
  }
}

function addMinimalUserDb(ctx: RuleContext, sel: Selection, epoch: number) {
  const { tree, app } = ctx;
  if (!tree.get("etc"))
    tree.set("etc", { inode: dirInode(0o755, 0, 0, epoch), children: new Map(), layer: SLIMROOT_LAYER });
  const name = app.uid === 0 ? "root" : app.user && !/^\d/.test(app.user) ? app.user.split(":")[0]! : "app";
  const made = (text: string) => ({
    inode: {
      kind: "file" as const,
      mode: 0o644,
      uid: 0,
      gid: 0,
      mtime: epoch,
      content: bufferContent(Buffer.from(text)),
    },
    layer: SLIMROOT_LAYER,
  });
  if (!tree.get("etc/passwd")) {
    const lines = ["root:x:0:0:root:/root:/bin/sh"];
    if (app.uid !== 0) lines.push(`${name}:x:${app.uid}:${app.gid}::/:/bin/sh`);
    tree.set("etc/passwd", made(`${lines.join("\n")}\n`));
    sel.add("etc/passwd", "rule: minimal /etc/passwd made for the configured user");
  }
  if (!tree.get("etc/group")) {
    const lines = ["root:x:0:"];
    if (app.gid !== 0) lines.push(`${name}:x:${app.gid}:`);
    tree.set("etc/group", made(`${lines.join("\n")}\n`));
    sel.add("etc/group", "rule: minimal /etc/group made for the configured user");
  }
}

/** --keep globs: every match (with its closure). */
export async function applyKeeps(ctx: RuleContext, globs: string[]): Promise<void> {
  const match = globMatcher(globs);
  for (const { path } of ctx.tree.walk()) {
    if (path !== "" && match(path))
      await ctx.keepWithClosure(path, `--keep ${globs.find((g) => globMatcher([g])(path))}`);
  }
}

/** --drop globs: removes matches from the selection, whatever kept them. */
export function applyDrops(sel: Selection, globs: string[]): void {
  const match = globMatcher(globs);
  for (const path of [...sel.reasons.keys()]) if (path !== "" && match(path)) sel.delete(path);
}
