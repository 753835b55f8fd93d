import { arch } from "node:process";
import { UserError } from "../util/errors.js";
import type { Platform } from "./types.js";

/** Parses "linux/amd64" or "linux/arm64/v8". */
export function parsePlatform(text: string): Platform {
  const parts = text.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === "")) {
    throw new UserError(`--platform ${text}: expected OS/ARCH[/VARIANT], e.g. linux/amd64`);
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return variant ? { os, architecture, variant } : { os, architecture };
}

export function formatPlatform(p: Platform): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

/** The platform of the machine we run on, in OCI terms. */
export function hostPlatform(): Platform {
  const map: Record<string, string> = { x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386" };
  return { os: "linux", architecture: map[arch] ?? arch };
}

export function platformMatches(want: Platform, have: Platform): boolean {
  if (want.os !== have.os || want.architecture !== have.architecture) return false;
  // arm64 images often say variant v8 or nothing; treat a missing variant on either side as a match.
  return !want.variant || !have.variant || want.variant === have.variant;
}

/** One entry of an OCI image index / Docker manifest list. */
export interface IndexEntry {
  mediaType?: string;
  digest: string;
  size?: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

/**
 * Picks the manifest for `want` from an index. Entries without a platform (attestations,
 * single-platform indexes) are taken only when nothing carries a platform.
 * Throws a UserError listing the platforms that are there.
 */
export function selectFromIndex(entries: IndexEntry[], want: Platform, where: string): IndexEntry {
  const withPlatform = entries.filter((e) => e.platform && e.platform.os !== "unknown");
  const found = withPlatform.find((e) => platformMatches(want, e.platform!));
  if (found) return found;
  if (withPlatform.length === 0 && entries.length === 1) return entries[0]!;
  const have = withPlatform.map((e) => formatPlatform(e.platform!));
  throw new UserError(
    `${where}: no image for platform ${formatPlatform(want)}; available: ${have.length ? have.join(", ") : "none"}`,
  );
}
