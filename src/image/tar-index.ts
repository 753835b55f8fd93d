import { readTar, tarErrorText } from "../tar/reader.js";
import { displayName, EscapeError, normalizeImagePath } from "../tree/path.js";
import { UserError } from "../util/errors.js";
import { FileChunks, openInput } from "../util/input-file.js";

export interface TarMember {
  name: string;
  /** Byte offset of the body in the archive. */
  offset: number;
  size: number;
  /** Stored as a GNU sparse file: there is no one range of the archive to read. */
  sparse?: true;
}

/**
 * Lists the regular files of an uncompressed tar, so members (such as a docker-archive's
 * layers) can be streamed later by offset. It is the layer reader itself (readTar) walking
 * the headers, seeking over bodies: the archive is read as strictly, and names resolve the
 * same way, as every layer is.
 */
export async function indexTar(file: string): Promise<Map<string, TarMember>> {
  const { fh } = await openInput(file);
  let current: string | undefined;
  try {
    const members = new Map<string, TarMember>();
    for await (const e of readTar(new FileChunks(fh, (await fh.stat()).size))) {
      current = displayName(e.name);
      if (e.kind !== "file") continue;
      const at = e.extent ?? { offset: -1, size: e.size };
      members.set(normalizeImagePath(e.name), { name: e.name, ...at, ...(e.extent ? {} : { sparse: true }) });
    }
    return members;
  } catch (err) {
    if (err instanceof EscapeError) throw new UserError(`${file}: entry ${current}: ${err.message}`);
    const text = tarErrorText(err, current);
    throw text === undefined ? err : new UserError(`${file}: ${text}`);
  } finally {
    await fh.close();
  }
}
