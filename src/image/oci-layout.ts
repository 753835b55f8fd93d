import { createReadStream, existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream";
import { UserError } from "../util/errors.js";
import { decompressLayer } from "./layer-stream.js";
import {
  asManifest,
  blobPath,
  digestVerifier,
  imageConfigFromJson,
  isIndex,
  parseJson,
  verifyDigest,
} from "./manifest.js";
import { type IndexEntry, selectFromIndex } from "./platform.js";
import type { Image, Platform } from "./types.js";

const REF_NAME = "org.opencontainers.image.ref.name";

/** Splits "PATH[:TAG]": the tag is what follows the last ":" when it holds no "/". */
export function splitLayoutRef(spec: string): { path: string; tag?: string } {
  const i = spec.lastIndexOf(":");
  if (i > 0 && !spec.slice(i + 1).includes("/") && !existsSync(spec)) {
    return { path: spec.slice(0, i), tag: spec.slice(i + 1) || undefined };
  }
  return { path: spec };
}

/** Opens an image in an OCI image layout directory (what umoci and skopeo write). */
export async function openOciLayout(spec: string, platform: Platform): Promise<Image> {
  const { path, tag } = splitLayoutRef(spec);
  const ref = `oci:${spec}`;
  const readBlob = async (digest: string, what: string) => {
    const file = join(path, blobPath(digest, ref));
    const data = await readFile(file).catch(() => {
      throw new UserError(`${ref}: ${what} blob ${digest} is missing from the layout`);
    });
    verifyDigest(data, digest, `${ref}: ${what} ${digest}`);
    return data;
  };

  const indexText = await readFile(join(path, "index.json")).catch((err: NodeJS.ErrnoException) => {
    throw new UserError(
      err.code === "ENOENT"
        ? `${ref}: ${path} is not an OCI layout (no index.json)`
        : `${ref}: ${err.message}`,
    );
  });
  const index = parseJson<{ manifests?: IndexEntry[] }>(indexText, `${ref}: index.json`);
  const manifests = index.manifests ?? [];
  let entry: IndexEntry | undefined;
  if (tag) {
    entry = manifests.find((m) => m.annotations?.[REF_NAME] === tag);
    if (!entry) {
      const tags = manifests.map((m) => m.annotations?.[REF_NAME]).filter(Boolean);
      throw new UserError(`${ref}: no tag ${tag} in the layout; tags: ${tags.join(", ") || "none"}`);
    }
  } else if (manifests.length === 1) {
    entry = manifests[0];
  } else {
    entry = selectFromIndex(manifests, platform, ref);
  }

  // Follow nested indexes (a tag may name a multi-platform index) down to one image manifest.
  let doc: unknown = parseJson(
    await readBlob(entry!.digest, "manifest"),
    `${ref}: manifest ${entry!.digest}`,
  );
  let manifestDigest = entry!.digest;
  for (let depth = 0; isIndex(doc as object); depth++) {
    if (depth > 4) throw new UserError(`${ref}: index nesting too deep`);
    const chosen = selectFromIndex((doc as { manifests: IndexEntry[] }).manifests, platform, ref);
    manifestDigest = chosen.digest;
    doc = parseJson(await readBlob(chosen.digest, "manifest"), `${ref}: manifest ${chosen.digest}`);
  }
  const manifest = asManifest(doc, `${ref}: manifest ${manifestDigest}`);
  const configDoc = parseJson(await readBlob(manifest.config.digest, "config"), `${ref}: config`);
  const { config, platform: imagePlatform } = imageConfigFromJson(configDoc, `${ref}: config`);

  const layers = manifest.layers.map((desc) => {
    const name = `${desc.digest} of ${ref}`;
    const file = join(path, blobPath(desc.digest, ref));
    return {
      name,
      open: async () => {
        if (!existsSync(file))
          throw new UserError(`${ref}: layer blob ${desc.digest} is missing from the layout`);
        const verify = digestVerifier(desc.digest, `layer ${name}`);
        pipeline(createReadStream(file), verify, () => undefined);
        return decompressLayer(verify, name);
      },
    };
  });
  return {
    ref,
    digest: manifestDigest,
    config,
    layers,
    ...(imagePlatform ? { platform: imagePlatform } : {}),
  };
}
