import { globMatcher } from "./selection.js";

/**
 * What no app reads at run time, dropped by `--minimize safe`: documentation, manuals,
 * translations and locales other than C.UTF-8, package-manager databases and caches, C
 * headers and static libraries. Everything else stays.
 */
export const SAFE_DROPS = [
  "usr/share/doc/**",
  "usr/share/man/**",
  "usr/share/info/**",
  "usr/share/lintian/**",
  "usr/share/linda/**",
  "usr/share/bug/**",
  "usr/share/locale/**",
  "usr/share/i18n/**",
  "usr/lib/locale/!(C.utf8|C.UTF-8)/**",
  "usr/lib/locale/locale-archive",
  "var/lib/dpkg/**",
  "var/lib/apt/**",
  "var/cache/apt/**",
  "var/cache/debconf/**",
  "var/cache/ldconfig/**",
  "var/log/apt/**",
  "var/log/dpkg.log",
  "var/lib/rpm/**",
  "var/cache/dnf/**",
  "var/cache/yum/**",
  "lib/apk/db/**",
  "var/cache/apk/**",
  "usr/include/**",
  "usr/local/include/**",
  "**/*.a",
];

const dropped = globMatcher(SAFE_DROPS);

const staticLibrary = globMatcher(["**/*.a"]);

/** True for a path `--minimize safe` drops (directories under a dropped tree go too). */
export function safeDrops(path: string, isDir: boolean): boolean {
  return isDir ? !staticLibrary(path) && dropped(path) : dropped(path);
}
