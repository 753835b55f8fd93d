import { existsSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../util/errors.js";
import { readInput } from "../util/input-file.js";
import { blobPath, openVerified, verifyDigest } from "./digest.js";
import { decompressLayer } from "./layer-stream.js";
import { imageConfigFromJson, readManifest } from "./manifest.js";
import { type IndexEntry, selectFromIndex } from "./platform.js";
import { readDocument } from "./schemas.js";
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
    if (!existsSync(file)) throw new UserError(`${ref}: ${what} blob ${digest} is missing from the layout`);
    const data = await readInput(file, `${ref}: ${what} blob ${digest}`);
    verifyDigest(data, digest, `${ref}: ${what} ${digest}`);
    return data;
  };

  if (!existsSync(join(path, "index.json")))
    throw new UserError(`${ref}: ${path} is not an OCI layout (no index.json)`);
  const indexText = await readInput(join(path, "index.json"), `${ref}: index.json`);
  const manifests = readDocument("index", indexText, `${ref}: index.json`).manifests;
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
  let manifestDigest = entry!.digest;
  let m = readManifest(await readBlob(manifestDigest, "manifest"), `${ref}: manifest ${manifestDigest}`);
  for (let depth = 0; m.kind === "index"; depth++) {
    if (depth > 4) throw new UserError(`${ref}: index nesting too deep`);
    manifestDigest = selectFromIndex(m.doc.manifests, platform, ref).digest;
    m = readManifest(await readBlob(manifestDigest, "manifest"), `${ref}: manifest ${manifestDigest}`);
  }
  const manifest = m.doc;
  const configDoc = readDocument(
    "imageConfig",
    await readBlob(manifest.config.digest, "config"),
    `${ref}: config`,
  );
  const { config, platform: imagePlatform } = imageConfigFromJson(configDoc, `${ref}: config`);

  const layers = manifest.layers.map((desc) => {
    const name = `${desc.digest} of ${ref}`;
    const file = join(path, blobPath(desc.digest, ref));
    return {
      name,
      open: async () => {
        if (!existsSync(file))
          throw new UserError(`${ref}: layer blob ${desc.digest} is missing from the layout`);
        return decompressLayer(await openVerified(file, desc.digest, `layer ${name}`), name);
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
