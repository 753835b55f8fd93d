import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { gzipSync } from "node:zlib";
import { type Header, pack } from "tar-stream";

/** One member of a crafted layer. */
export type LayerEntry = Partial<Header> & { name: string; body?: string | Buffer };

/** A tar archive holding `entries` in the order given (names are written verbatim). */
export async function tarOf(entries: LayerEntry[]): Promise<Buffer> {
  const p = pack();
  const out = buffer(p);
  for (const { body, ...header } of entries) {
    const data = body === undefined ? undefined : Buffer.from(body);
    await new Promise<void>((resolve, reject) => {
      const h = {
        mode: header.type === "directory" ? 0o755 : 0o644,
        mtime: new Date(1_600_000_000_000),
        uid: 0,
        gid: 0,
        ...header,
        size: data?.length ?? 0,
      };
      p.entry(h, data ?? "", (err) => (err ? reject(err) : resolve()));
    });
  }
  p.finalize();
  return out;
}

const sha256 = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

export interface CraftedImage {
  layers: Buffer[];
  config?: Record<string, unknown>;
  architecture?: string;
  /** gzip the layers (the usual registry form). */
  gzip?: boolean;
}

/** Writes an OCI image layout with one image tagged `latest`; returns its digest. */
export async function writeOciLayout(dir: string, image: CraftedImage): Promise<string> {
  await mkdir(join(dir, "blobs", "sha256"), { recursive: true });
  const put = async (data: Buffer) => {
    const digest = sha256(data);
    await writeFile(join(dir, "blobs", "sha256", digest.slice(7)), data);
    return { digest, size: data.length };
  };
  const diffIds: string[] = [];
  const layerDescs = [];
  for (const tar of image.layers) {
    diffIds.push(sha256(tar));
    const blob = image.gzip ? gzipSync(tar) : tar;
    layerDescs.push({
      mediaType: image.gzip
        ? "application/vnd.oci.image.layer.v1.tar+gzip"
        : "application/vnd.oci.image.layer.v1.tar",
      ...(await put(blob)),
    });
  }
  const config = {
    architecture: image.architecture ?? "amd64",
    os: "linux",
    config: image.config ?? { Cmd: ["/bin/sh"] },
    rootfs: { type: "layers", diff_ids: diffIds },
  };
  const configDesc = {
    mediaType: "application/vnd.oci.image.config.v1+json",
    ...(await put(Buffer.from(JSON.stringify(config)))),
  };
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: configDesc,
      layers: layerDescs,
    }),
  );
  const manifestDesc = await put(manifest);
  await writeFile(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await writeFile(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          ...manifestDesc,
          annotations: { "org.opencontainers.image.ref.name": "latest" },
        },
      ],
    }),
  );
  return manifestDesc.digest;
}
