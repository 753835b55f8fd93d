import type { Readable } from "node:stream";
import { PassThrough, pipeline } from "node:stream";
import { createGunzip } from "node:zlib";
import { UserError } from "../util/errors.js";
import { toolFilter } from "../util/tool-filter.js";

/**
 * Turns a possibly compressed layer stream (gzip, zstd, xz or plain tar) into a plain tar stream,
 * by sniffing the magic bytes. Errors name the layer.
 */
export function decompressLayer(input: Readable, name: string): Readable {
  const out = new PassThrough();
  let sniffed = false;
  const onFirst = (chunk: Buffer) => {
    sniffed = true;
    input.pause();
    input.off("data", onFirst);
    input.unshift(chunk);
    let decoder: NodeJS.ReadWriteStream | null = null;
    if (chunk.length >= 2 && chunk[0] === 0x1f && chunk[1] === 0x8b) decoder = createGunzip();
    else if (chunk.length >= 4 && chunk.readUInt32LE(0) === 0xfd2fb528) decoder = zstdDecoder(name);
    else if (chunk.length >= 6 && chunk.subarray(0, 6).equals(XZ_MAGIC)) {
      decoder = toolFilter("xz", ["-d", "-c", "-q"], `layer ${name}`);
    }
    const fail = (err: Error | null) => {
      if (err) out.destroy(err instanceof UserError ? err : new UserError(`layer ${name}: ${describe(err)}`));
    };
    if (decoder) pipeline(input, decoder, out, fail);
    else pipeline(input, out, fail);
  };
  input.on("data", onFirst);
  input.once("end", () => {
    if (!sniffed) out.end();
  });
  input.once("error", (err) => {
    if (!sniffed)
      out.destroy(err instanceof UserError ? err : new UserError(`layer ${name}: ${describe(err)}`));
  });
  return out;
}

function describe(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "Z_BUF_ERROR" || err.message === "unexpected end of file") return "truncated compressed data";
  if (code === "Z_DATA_ERROR") return `corrupt gzip data (${err.message})`;
  return err.message;
}

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

/** zstd layers go through the standard `zstd` tool: Node 20's zlib has no zstd. */
function zstdDecoder(name: string): NodeJS.ReadWriteStream {
  return toolFilter("zstd", ["-d", "-c", "-q"], `layer ${name}`);
}
