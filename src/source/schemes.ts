import { UserError } from "../util/errors.js";
import { bin } from "./bin.js";
import { dir } from "./dir.js";
import { docker } from "./docker.js";
import { dockerArchive } from "./docker-archive.js";
import { list } from "./list.js";
import { oci } from "./oci.js";
import type { OpenOptions, SourceImage, SourceScheme } from "./source.js";
import { tar } from "./tar.js";

/** Every source slimroot reads, by scheme. A new source is a module here and a line below. */
export const SCHEMES: readonly SourceScheme[] = [oci, dockerArchive, docker, dir, tar, bin, list];

/** A reference split at its scheme: "oci:./x:latest" -> scheme oci, value "./x:latest". */
export interface SourceRef {
  /** The scheme's name, e.g. "oci" or "docker". */
  transport: string;
  /** What follows "SCHEME:" ("//" kept for docker). */
  value: string;
  /** The reference as the user wrote it, for messages. */
  text: string;
}

/** Splits a containers-transports style reference; an unknown scheme or no value is refused. */
export function parseSourceRef(text: string): SourceRef & { scheme: SourceScheme } {
  const i = text.indexOf(":");
  const scheme = SCHEMES.find((s) => i > 0 && s.scheme === text.slice(0, i));
  if (!scheme) {
    throw new UserError(
      `${text}: unknown image source; use one of ${SCHEMES.map((s) => s.usage).join(", ")}`,
    );
  }
  const value = text.slice(i + 1);
  if (!value) throw new UserError(`${text}: missing ${scheme.scheme === "docker" ? "reference" : "path"}`);
  return { transport: scheme.scheme, value, text, scheme };
}

/** Opens a reference: oci:PATH[:TAG], docker://REF, dir:PATH, ... */
export function openSource(text: string, opts: OpenOptions): Promise<SourceImage> {
  const ref = parseSourceRef(text);
  return ref.scheme.open(ref.value, text, opts);
}
