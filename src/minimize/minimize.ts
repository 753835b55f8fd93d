import type { AppConfig } from "../appconfig/appconfig.js";
import { resolvePath, treeFs } from "../tree/image-fs.js";
import type { Tree } from "../tree/tree.js";
import { UserError } from "../util/errors.js";
import { applyDrops, applyKeeps, applyRules } from "./rules.js";
import { safeDrops } from "./safe.js";
import { explainParents, pruneTree, Selection } from "./selection.js";
import { applyTraceRules } from "./trace-rules.js";

export type MinimizeLevel = "none" | "safe" | "static" | "trace";
export const MINIMIZE_LEVELS: readonly MinimizeLevel[] = ["none", "safe", "static", "trace"];

/** Image paths (no leading "/") an ELF closure or symlink chain brings in, each with a reason. */
export interface Closure {
  files: Map<string, string>;
  warnings: string[];
}

/** Resolves the closure of `roots` (image paths) inside the image. */
export type ClosureResolver = (roots: string[], reason: string) => Promise<Closure>;

/** What `slimroot trace` recorded, for level "trace" (src/trace/profile.ts). */
export interface TracedProfile {
  /** Image paths the app used (no leading "/"): opened, or named and found; symlinks on the way. */
  paths: string[];
  /** Image directories the app listed. */
  listed?: string[];
  /** Absolute guest paths the app looked up that the image does not have. */
  missing?: string[];
  /** The init recorded lookups, not only opens (init/record.c): fanotify's blind spots are covered. */
  lookups?: boolean;
}

/** The reason of a directory the app listed: which of its entries stay, and why. */
export const LISTED_WHY =
  "traced: the app listed this directory (its entries the app also opened or looked up stay; the ones it only saw listed go: it read their names and did not use them)";

export interface MinimizeOptions {
  level: MinimizeLevel;
  app: AppConfig;
  closure: ClosureResolver;
  /** What a trace recorded (for level "trace"). */
  profile?: TracedProfile;
  /** Image paths added with --add: always kept. */
  added: string[];
  keep: string[];
  drop: string[];
  epoch: number;
}

export interface MinimizeResult {
  /** Why each remaining path is in the image. */
  reasons: Map<string, string>;
  warnings: string[];
}

/**
 * Cuts `tree` down to what the level keeps, in place, and says why each path stayed.
 * none keeps everything; safe drops what nothing reads at run time; static keeps the ELF
 * closure of the entrypoint, /etc and the directory skeleton; trace keeps what a traced run
 * touched. The last three all get the rules (users, NSS, CA bundle, runtime dirs, ...).
 */
export async function minimize(tree: Tree, o: MinimizeOptions): Promise<MinimizeResult> {
  const sel = new Selection();
  const warnings: string[] = [];
  const keepWithClosure = async (path: string, reason: string) => {
    if (!sel.add(path, reason)) return;
    const c = await o.closure([path], reason);
    for (const [p, why] of c.files) sel.add(p, why);
    warnings.push(...c.warnings);
  };

  if (o.level === "none") {
    for (const { path } of tree.walk()) sel.add(path, "image (--minimize none)");
  } else if (o.level === "safe") {
    for (const { path, inode } of tree.walk()) {
      if (!safeDrops(path, inode.kind === "dir"))
        sel.add(path, "safe: not docs, locales, package databases or headers");
    }
  } else {
    const ctx = { tree, app: o.app, keepWithClosure };
    if (o.level === "static") {
      const entry = resolveCommand(tree, o.app);
      await keepWithClosure(entry, `entrypoint ${o.app.args[0]}`);
      for (const arg of o.app.args.slice(1)) {
        const p = arg.replace(/^\/+/, "");
        if (arg.startsWith("/") && tree.get(p)?.inode.kind === "file")
          await keepWithClosure(p, `named in the command line`);
      }
      const fs = treeFs(tree);
      for (const { path, inode } of [...tree.walk()]) {
        if (path === "etc" || path.startsWith("etc/")) {
          sel.add(path, "static: all of /etc");
          // /etc links often point into /usr (nginx's modules-enabled): keep where they lead,
          // but not the closure of programs behind /etc/alternatives.
          if (inode.kind === "symlink") {
            const r = resolvePath(fs, `/${path}`);
            if (r && fs.lstat(r.path)?.kind === "file") {
              for (const link of r.links) sel.add(link.slice(1), `symlink on the way from /${path}`);
              sel.add(r.path.slice(1), `target of /${path}`);
            }
          }
        } else if (inode.kind === "dir") sel.add(path, "static: directory skeleton (kept empty)");
      }
    } else {
      if (!o.profile) throw new UserError("--minimize trace needs --profile FILE (made by slimroot trace)");
      for (const d of o.profile.listed ?? []) if (tree.get(d)?.inode.kind === "dir") sel.add(d, LISTED_WHY);
      const traced = new Set(o.profile.paths.filter((p) => tree.get(p)));
      for (const p of traced) await keepWithClosure(p, "traced: the app used it");
      const entry = resolveCommand(tree, o.app);
      await keepWithClosure(entry, `entrypoint ${o.app.args[0]}`);
      await applyTraceRules(ctx, sel, traced, o.profile.lookups ?? false);
    }
    await applyRules(ctx, sel, o.epoch);
  }
  // static and trace refuse a missing entrypoint; the whole image says so too (docker would
  // build it and fail at run time).
  if (o.level === "none" || o.level === "safe") {
    try {
      resolveCommand(tree, o.app);
    } catch (err) {
      if (!(err instanceof UserError)) throw err;
      warnings.push(`${err.message}; the app cannot start (the init reports 127)`);
    }
  }
  for (const p of o.added) sel.add(p, "--add");
  if (o.keep.length) await applyKeeps({ tree, app: o.app, keepWithClosure }, o.keep);
  applyDrops(sel, o.drop);

  // --minimize none with nothing dropped keeps every path with its reason already: skip the
  // prune and the second map (each a million entries for a layer of a million files).
  if (o.level === "none" && o.drop.length === 0)
    return { reasons: sel.reasons, warnings: [...new Set(warnings)] };
  pruneTree(tree, sel);
  return { reasons: explainParents(tree, sel), warnings: [...new Set(warnings)] };
}

/**
 * The entrypoint as an image path: argv[0], searched in the app's PATH when it has no "/",
 * following symlinks inside the image (/bin may be a link to usr/bin).
 */
export function resolveCommand(tree: Tree, app: AppConfig): string {
  const fs = treeFs(tree);
  const isFile = (abs: string) => {
    const r = resolvePath(fs, abs);
    return r !== undefined && fs.lstat(r.path)?.kind === "file";
  };
  const argv0 = app.args[0]!;
  if (argv0.includes("/")) {
    const abs = argv0.startsWith("/") ? argv0 : `${app.workdir.replace(/\/+$/, "")}/${argv0}`;
    if (!isFile(abs)) throw new UserError(`entrypoint ${argv0}: not in the image`);
    return abs.replace(/^\/+/, "");
  }
  const path = app.env.find((e) => e.startsWith("PATH="))?.slice(5) ?? "";
  for (const dir of path.split(":")) {
    if (!dir.startsWith("/")) continue;
    const abs = `${dir.replace(/\/+$/, "")}/${argv0}`;
    if (isFile(abs)) return abs.replace(/^\/+/, "");
  }
  throw new UserError(`entrypoint ${argv0}: not found in the image's PATH (${path})`);
}
