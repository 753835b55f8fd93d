import { resolvePath, treeFs } from "../tree/image-fs.js";
import type { Tree } from "../tree/tree.js";

/** Services kept when the image has no nsswitch.conf (glibc's built-in defaults, old and new). */
const DEFAULT_SERVICES = ["files", "dns", "compat"];

/** A module or nsswitch.conf larger than this is not read whole (modules are tens of KiB). */
const READ_LIMIT = 16 * 1024 * 1024;

/**
 * The services /etc/nsswitch.conf names (`hosts: files mdns4_minimal [NOTFOUND=return] dns`
 * names files, mdns4_minimal and dns).
 */
export function nsswitchServices(text: string): Set<string> {
  const out = new Set<string>();
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "");
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    // Actions in brackets are not services.
    for (const word of line
      .slice(colon + 1)
      .replace(/\[[^\]]*\]?/g, " ")
      .split(/\s+/))
      if (/^[A-Za-z0-9_-]+$/.test(word)) out.add(word);
  }
  return out;
}

/**
 * NSS modules glibc loads by name (dlopen of libnss_SERVICE.so.2, which no DT_NEEDED names):
 * one for each service the image's nsswitch.conf names (without one, files, dns and compat),
 * with its closure (old glibc's nss_dns brings libresolv that way). A module that defines no
 * `_nss_SERVICE_` function is passed over: glibc 2.34 and later build files and dns into
 * libc.so.6 and ship their modules as empty stubs it never opens.
 */
export async function keepNssModules(ctx: {
  tree: Tree;
  keepWithClosure(path: string, reason: string): Promise<void>;
}): Promise<void> {
  const fs = treeFs(ctx.tree);
  const read = async (abs: string) => {
    const r = resolvePath(fs, abs);
    return r && (await fs.readFile(r.path, READ_LIMIT));
  };
  const conf = await read("/etc/nsswitch.conf");
  const services = conf ? nsswitchServices(conf.toString("latin1")) : new Set(DEFAULT_SERVICES);
  const named = conf
    ? "which /etc/nsswitch.conf names"
    : "a default of glibc's (the image has no nsswitch.conf)";
  for (const { path, inode } of [...ctx.tree.walk()]) {
    if (inode.kind === "dir" || !/(^|\/)lib(64)?(\/|$)/.test(path)) continue;
    const m = /^libnss_([A-Za-z0-9_-]+?)[.-][^/]*so/.exec(path.slice(path.lastIndexOf("/") + 1));
    const service = m?.[1];
    if (!service || !services.has(service)) continue;
    const body = await read(`/${path}`);
    if (!body?.includes(`_nss_${service}_`)) continue;
    await ctx.keepWithClosure(path, `rule: NSS module for "${service}", ${named} (glibc loads it by name)`);
  }
}
