/**
 * An uncompressed tar layer (`application/vnd.oci.image.layer.v1.tar`) around files already on
 * disk, for the consumer forms (urunc, flintlock, containerDisk), which read a file at a path
 * inside an ordinary container image. The layer is never written out: it is a list of parts
 * (ustar headers, the files themselves, padding) that the upload reads in turn. Every header
 * field is fixed (mtime = SOURCE_DATE_EPOCH, names sorted as given), so the same files give the
 * same digest. Uncompressed because what goes in is compressed already (an initramfs, a kernel)
 * or a disk image the consumer wants as it is; and the diff_id is then the digest.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import type { BlobPart } from "../image/registry/session.js";
import { UserError } from "../util/errors.js";

export const TAR_LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar";

export interface TarMember {
  /** The path inside the image, relative ("disk/app.ext4"); a directory ends with "/". */
  name: string;
  mode: number;
  uid?: number;
  gid?: number;
  /** A file on disk, or bytes; none for a directory. */
  body?: BlobPart;
}

const BLOCK = 512;

function octal(buf: Buffer, at: number, width: number, value: number): void {
  buf.write(`${value.toString(8).padStart(width - 1, "0")}\0`, at, width, "ascii");
}

function header(m: TarMember, size: number, epoch: number): Buffer {
  if (Buffer.byteLength(m.name) > 100 || !/^[A-Za-z0-9._/-]+$/.test(m.name))
    throw new UserError(`${m.name}: not a name a layer of this form can hold`);
  const h = Buffer.alloc(BLOCK);
  h.write(m.name, 0, 100, "utf8");
  octal(h, 100, 8, m.mode);
  octal(h, 108, 8, m.uid ?? 0);
  octal(h, 116, 8, m.gid ?? 0);
  octal(h, 124, 12, size);
  octal(h, 136, 12, epoch);
  h.fill(" ", 148, 156); // the checksum counts its own field as spaces
  h.write(m.name.endsWith("/") ? "5" : "0", 156, 1, "ascii");
  h.write("ustar\0" + "00", 257, 8, "ascii");
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "ascii");
  return h;
}

/** The layer's parts, in order; the closing two zero blocks end it. */
export function tarLayer(members: TarMember[], epoch: number): BlobPart[] {
  const parts: BlobPart[] = [];
  for (const m of members) {
    const size = m.body ? ("bytes" in m.body ? m.body.bytes.length : m.body.size) : 0;
    parts.push({ bytes: header(m, size, epoch) });
    if (m.body) parts.push(m.body);
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad) parts.push({ bytes: Buffer.alloc(pad) });
  }
  parts.push({ bytes: Buffer.alloc(2 * BLOCK) });
  return parts;
}

/** sha256 and size of the parts, files read as streams (a disk image is never held whole). */
export async function partsDigest(parts: BlobPart[]): Promise<{ digest: string; size: number }> {
  const h = createHash("sha256");
  let size = 0;
  for (const p of parts) {
    if ("bytes" in p) {
      h.update(p.bytes);
      size += p.bytes.length;
      continue;
    }
    let read = 0;
    for await (const chunk of createReadStream(p.file)) {
      h.update(chunk as Buffer);
      read += (chunk as Buffer).length;
    }
    if (read !== p.size) throw new UserError(`${p.file}: changed while it was pushed`);
    size += read;
  }
  return { digest: `sha256:${h.digest("hex")}`, size };
}
