import { existsSync } from "node:fs";
import { Readable } from "node:stream";
import { normalizeImagePath } from "../tree/path.js";
import { UserError } from "../util/errors.js";
import { inputStream, openInput } from "../util/input-file.js";
import { decompressLayer } from "./layer-stream.js";
import { imageConfigFromJson } from "./manifest.js";
import { readDocument } from "./schemas.js";
import { indexTar, type TarMember } from "./tar-index.js";
import type { Image } from "./types.js";

/** Splits "PATH[:NAME:TAG]" (skopeo's syntax), preferring the longest PATH that exists. */
export function splitArchiveRef(spec: string): { path: string; name?: string } {
  if (existsSync(spec)) return { path: spec };
  for (let i = spec.indexOf(":"); i > 0; i = spec.indexOf(":", i + 1)) {
    if (existsSync(spec.slice(0, i))) return { path: spec.slice(0, i), name: spec.slice(i + 1) };
  }
  return { path: spec };
}

async function readRange(path: string, member: TarMember): Promise<Buffer> {
  const { fh } = await openInput(path);
  try {
    const buf = Buffer.alloc(member.size);
    await fh.read(buf, 0, member.size, member.offset);
    return buf;
  } finally {
    await fh.close();
  }
}

/** Opens `docker save` / `skopeo copy ... docker-archive:` tarballs without unpacking them. */
export async function openDockerArchive(spec: string): Promise<Image> {
  const ref = `docker-archive:${spec}`;
  const { path, name } = splitArchiveRef(spec);
  const members = await indexTar(path);
  const member = (memberName: string, what: string) => {
    const m = members.get(normalizeImagePath(memberName));
    if (!m) throw new UserError(`${ref}: ${what} ${memberName} is missing from the archive`);
    if (m.sparse) throw new UserError(`${ref}: ${what} ${memberName} is stored as a sparse file`);
    return m;
  };
  const readMember = async (memberName: string, what: string) => readRange(path, member(memberName, what));

  const manifests = readDocument(
    "dockerArchiveManifest",
    await readMember("manifest.json", "file"),
    `${ref}: manifest.json`,
  );
  let chosen = manifests[0]!;
  if (name) {
    const found = manifests.find((m) => (m.RepoTags ?? []).includes(name!));
    if (!found) {
      const all = manifests.flatMap((m) => m.RepoTags ?? []);
      throw new UserError(`${ref}: no image tagged ${name}; tags: ${all.join(", ") || "none"}`);
    }
    chosen = found;
  } else if (manifests.length > 1) {
    const all = manifests.flatMap((m) => m.RepoTags ?? []);
    throw new UserError(
      `${ref}: the archive holds ${manifests.length} images; pick one with :NAME:TAG (${all.join(", ")})`,
    );
  }

  const configWhat = `${ref}: config ${chosen.Config}`;
  const configDoc = readDocument("imageConfig", await readMember(chosen.Config, "config"), configWhat);
  const { config, platform } = imageConfigFromJson(configDoc, configWhat);
  const layers = chosen.Layers.map((layerName) => {
    const m = member(layerName, "layer");
    const label = `${layerName} of ${ref}`;
    return {
      name: label,
      open: async () =>
        decompressLayer(
          m.size === 0
            ? Readable.from([])
            : await inputStream(path, path, { start: m.offset, end: m.offset + m.size - 1 }),
          label,
        ),
    };
  });
  return { ref, config, layers, ...(platform ? { platform } : {}) };
}
