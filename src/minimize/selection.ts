import picomatch from "picomatch";
import { joinImagePath, parentOf } from "../tree/path.js";
import type { Node, Tree } from "../tree/tree.js";

/**
 * The set of image paths to keep, each with the first reason it was kept for. Paths are
 * image paths ("usr/bin/env", no leading slash); "" is the root.
 */
export class Selection {
  readonly reasons = new Map<string, string>();

  add(path: string, reason: string): boolean {
    const p = path.replace(/^\/+/, "");
    if (this.reasons.has(p)) return false;
    this.reasons.set(p, reason);
    return true;
  }

  has(path: string): boolean {
    return this.reasons.has(path.replace(/^\/+/, ""));
  }

  delete(path: string): void {
    this.reasons.delete(path.replace(/^\/+/, ""));
  }
}

/** A matcher for image paths from user globs written as absolute paths ("/usr/share/**"). */
export function globMatcher(globs: string[]): (path: string) => boolean {
  if (globs.length === 0) return () => false;
  const m = picomatch(
    globs.map((g) => g.replace(/^\/+/, "")),
    { dot: true },
  );
  return (path: string) => m(path);
}

/**
 * Removes from `tree` everything not selected. Parents of kept paths stay (with their own
 * metadata); a selected directory stays even when empty; an unselected directory whose
 * children are all dropped goes.
 */
export function pruneTree(tree: Tree, keep: Selection): void {
  const needed = new Set<string>([""]);
  for (const path of keep.reasons.keys()) {
    for (let p = path; p !== "" && !needed.has(p); p = parentOf(p)) needed.add(p);
  }
  // A stack, not recursion: an image may be thousands of directories deep.
  const dirs: [string, Node][] = [["", tree.root]];
  for (let next = dirs.pop(); next; next = dirs.pop()) {
    const [dir, node] = next;
    for (const [name, child] of node.children!) {
      const path = joinImagePath(dir, name);
      if (!needed.has(path)) node.children!.delete(name);
      else if (child.children) dirs.push([path, child]);
    }
  }
}

/** Reasons for the parents that pruning keeps implicitly, so every entry has one. */
export function explainParents(tree: Tree, keep: Selection): Map<string, string> {
  const out = new Map<string, string>();
  for (const { path } of tree.walk()) {
    out.set(path, keep.reasons.get(path) ?? (path === "" ? "image root" : "parent of a kept path"));
  }
  return out;
}
