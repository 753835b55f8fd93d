import {
  BLOCK,
  type HeaderBlock,
  lastValues,
  parseHeader,
  parsePax,
  TarFormatError,
  trimNuls,
} from "../tar/header.js";
import { displayName, nameFromBytes, normalizeImagePath } from "../tree/path.js";
import { UserError } from "../util/errors.js";
import { openInput } from "../util/input-file.js";

export interface TarMember {
  name: string;
  /** Byte offset of the body in the archive. */
  offset: number;
  size: number;
}

/**
 * Lists the regular files of an uncompressed tar by reading its headers only, seeking over
 * bodies, so members (such as a docker-archive's layers) can be streamed later by offset.
 * Understands ustar prefixes, GNU long names and pax `path` records.
 */
export async function indexTar(file: string): Promise<Map<string, TarMember>> {
  const { fh } = await openInput(file);
  try {
    const { size: total } = await fh.stat();
    const members = new Map<string, TarMember>();
    const header = Buffer.alloc(BLOCK);
    let pos = 0;
    let longName: Buffer | undefined;
    let pax: Map<string, Buffer> | undefined;
    while (pos + BLOCK <= total) {
      await fh.read(header, 0, BLOCK, pos);
      let h: HeaderBlock | null;
      try {
        h = parseHeader(header);
      } catch (err) {
        if (!(err instanceof TarFormatError)) throw err;
        throw new UserError(`${file}: not a tar archive (bad header at byte ${pos}: ${err.message})`);
      }
      if (!h) break;
      const size = pax?.has("size") ? Number(pax.get("size")!.toString("latin1")) : h.size;
      const body = pos + BLOCK;
      const rawName = pax?.get("path") ?? longName ?? h.name;
      if (!Number.isSafeInteger(size) || body + size > total) {
        throw new UserError(
          `${file}: truncated: member ${displayName(nameFromBytes(rawName))} claims ${size} bytes, ${total - body} follow`,
        );
      }
      const next = body + Math.ceil(size / BLOCK) * BLOCK;
      if (h.typeflag === "L" || h.typeflag === "x") {
        if (size > 1 << 20) throw new UserError(`${file}: ${size}-byte extended header at byte ${pos}`);
        const data = Buffer.alloc(size);
        await fh.read(data, 0, size, body);
        if (h.typeflag === "L") longName = trimNuls(data);
        else {
          try {
            pax = lastValues(parsePax(data, `byte ${pos}`));
          } catch (err) {
            if (!(err instanceof TarFormatError)) throw err;
            throw new UserError(`${file}: ${err.message} (member at byte ${pos})`);
          }
        }
      } else {
        longName = pax = undefined;
        if (rawName.includes(0))
          throw new UserError(`${file}: member name at byte ${pos} contains a NUL byte`);
        if (h.typeflag === "0" || h.typeflag === "\0" || h.typeflag === "7") {
          const name = nameFromBytes(rawName);
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
