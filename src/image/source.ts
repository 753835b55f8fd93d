import { createReadStream, existsSync, statSync } from "node:fs";
import { UserError } from "../util/errors.js";
import { openDockerArchive } from "./docker-archive.js";
import { decompressLayer } from "./layer-stream.js";
import { openOciLayout } from "./oci-layout.js";
import type { Image, Platform } from "./types.js";

export type Transport = "oci" | "docker-archive" | "docker" | "dir" | "tar" | "bin";
export const TRANSPORTS: readonly Transport[] = ["oci", "docker-archive", "docker", "dir", "tar", "bin"];

export interface SourceRef {
  transport: Transport;
  /** What follows "TRANSPORT:" ("//" stripped for docker). */
  value: string;
  /** The reference as the user wrote it, for messages. */
  text: string;
}

/** Parses containers-transports style references: oci:PATH[:TAG], docker://REF, dir:PATH, ... */
export function parseSourceRef(text: string): SourceRef {
  const i = text.indexOf(":");
  const transport = i > 0 ? text.slice(0, i) : "";
  if (!(TRANSPORTS as readonly string[]).includes(transport)) {
    throw new UserError(
      `${text}: unknown image source; use one of ${TRANSPORTS.map((t) => (t === "docker" ? "docker://REF" : `${t}:PATH`)).join(", ")}`,
    );
  }
  let value = text.slice(i + 1);
  if (transport === "docker") {
    if (!value.startsWith("//"))
      throw new UserError(`${text}: a registry reference is written docker://HOST/NAME[:TAG]`);
    value = value.slice(2);
  }
  if (!value) throw new UserError(`${text}: missing ${transport === "docker" ? "reference" : "path"}`);
  return { transport: transport as Transport, value, text };
}

export interface OpenOptions {
  platform: Platform;
  insecure?: boolean;
  progress?: (p: { done: number; total: number }) => void;
}

/** A layered source opened as an Image; `dir:` sources are copied straight into a tree instead. */
export async function openLayeredSource(ref: SourceRef, opts: OpenOptions): Promise<Image> {
  switch (ref.transport) {
    case "oci":
      return openOciLayout(ref.value, opts.platform);
    case "docker-archive":
      return openDockerArchive(ref.value);
    case "docker": {
      const { pullImage } = await import("./registry/client.js");
      return pullImage(ref.value, {
        insecure: opts.insecure,
        platform: opts.platform,
        progress: opts.progress,
      });
    }
    case "tar":
      return openRootfsTarball(ref.value);
    case "dir":
    case "bin":
      throw new Error(`internal: ${ref.transport}: is not a layered source`);
  }
}

/** A rootfs tarball (plain, gzip, zstd or xz) is a one-layer image with no config. */
function openRootfsTarball(path: string): Image {
  if (!existsSync(path) || !statSync(path).isFile()) throw new UserError(`tar:${path}: no such file`);
  const name = `tar:${path}`;
  return {
    ref: name,
    config: {},
    layers: [{ name, open: async () => decompressLayer(createReadStream(path), name) }],
  };
}
