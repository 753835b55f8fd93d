import { open } from "node:fs/promises";
import { normalizeImagePath } from "../tree/path.js";
import { UserError } from "../util/errors.js";

export interface TarMember {
  name: string;
  /** Byte offset of the body in the archive. */
  offset: number;
  size: number;
}

const BLOCK = 512;

function octal(buf: Buffer, start: number, length: number): number {
  // GNU base-256 for sizes of 8 GiB and more.
  if (buf[start]! & 0x80) {
    let v = 0;
    for (let i = start + 1; i < start + length; i++) v = v * 256 + buf[i]!;
    return v;
  }
  const text = buf
    .toString("ascii", start, start + length)
    .replace(/\0.*$/s, "")
    .trim();
  return text ? Number.parseInt(text, 8) : 0;
}

function cstring(buf: Buffer, start: number, length: number): string {
  const end = buf.indexOf(0, start);
  return buf.toString("utf8", start, end < 0 || end > start + length ? start + length : end);
}

/**
 * Lists the regular files of an uncompressed tar by reading its headers only, seeking over
 * bodies, so members (such as a docker-archive's layers) can be streamed later by offset.
 * Understands ustar prefixes, GNU long names and pax `path` records.
 */
export async function indexTar(file: string): Promise<Map<string, TarMember>> {
  const fh = await open(file, "r").catch((err: NodeJS.ErrnoException) => {
    throw new UserError(`${file}: ${err.code === "ENOENT" ? "no such file" : err.message}`);
  });
  try {
    const { size: total } = await fh.stat();
    const members = new Map<string, TarMember>();
    const header = Buffer.alloc(BLOCK);
    let pos = 0;
    let longName: string | undefined;
    while (pos + BLOCK <= total) {
      await fh.read(header, 0, BLOCK, pos);
      if (header.every((b) => b === 0)) break;
      const magic = header.toString("ascii", 257, 262);
      if (magic !== "ustar") throw new UserError(`${file}: not a tar archive (bad header at byte ${pos})`);
      const size = octal(header, 124, 12);
      const type = String.fromCharCode(header[156]!);
      const body = pos + BLOCK;
      if (body + size > total) {
        throw new UserError(
          `${file}: truncated: member ${cstring(header, 0, 100)} claims ${size} bytes, ${total - body} follow`,
        );
      }
      const next = body + Math.ceil(size / BLOCK) * BLOCK;
      if (type === "L" || type === "x") {
        const data = Buffer.alloc(size);
        await fh.read(data, 0, size, body);
        if (type === "L") longName = cstring(data, 0, size);
        else {
          const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(data.toString("utf8"));
          if (m) longName = m[1];
        }
      } else {
        const prefix = cstring(header, 345, 155);
        const short = cstring(header, 0, 100);
        const name = longName ?? (prefix ? `${prefix}/${short}` : short);
        longName = undefined;
        if (type === "0" || type === "\0" || type === "7") {
          members.set(normalizeImagePath(name), { name, offset: body, size });
        }
      }
      pos = next;
    }
    return members;
  } finally {
    await fh.close();
  }
}
