import { printable } from "./errors.js";

/*
 * Names are bytes on Linux, in tar and in cpio, but strings here. A name is held as the
 * string its bytes decode to as UTF-8 (which nearly every image uses, so paths stay readable
 * in messages, rules and profiles), and each byte that is not part of valid UTF-8 as the lone
 * surrogate U+DC80 + (byte - 0x80), as Python's "surrogateescape" does. Valid UTF-8 never
 * decodes to a lone surrogate, so the mapping is one-to-one: two different byte names are
 * always two different strings, and nameBytes() gives the original bytes back for the writer.
 */

// ignoreBOM: a name that starts with U+FEFF keeps it (by default the decoder drops it, and
// "h/\x80/\xef\xbb\xbf" would become "h/\x80/", the directory itself).
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const ESCAPED = /[\udc80-\udcff]/;

/** The string for a name's bytes (see above). */
export function nameFromBytes(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return decodeEscaping(bytes);
  }
}

/** The bytes of a name made by nameFromBytes (or any other string, as UTF-8). */
export function nameBytes(name: string): Buffer {
  if (!ESCAPED.test(name)) return Buffer.from(name);
  const parts: Buffer[] = [];
  let run = "";
  for (const ch of name) {
    const c = ch.charCodeAt(0);
    if (ch.length === 1 && c >= 0xdc80 && c <= 0xdcff) {
      if (run) parts.push(Buffer.from(run));
      run = "";
      parts.push(Buffer.of(c - 0xdc00));
    } else run += ch;
  }
  if (run) parts.push(Buffer.from(run));
  return Buffer.concat(parts);
}

function decodeEscaping(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  while (i < bytes.length) {
    const n = validSequenceLength(bytes, i);
    if (n === 0) {
      out += String.fromCharCode(0xdc00 + bytes[i]!);
      i++;
    } else {
      out += strictUtf8.decode(bytes.subarray(i, i + n));
      i += n;
    }
  }
  return out;
}

/** Length of the well-formed UTF-8 sequence at i (RFC 3629: no overlongs, no surrogates), or 0. */
function validSequenceLength(b: Uint8Array, i: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf) => i + k < b.length && b[i + k]! >= lo && b[i + k]! <= hi;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if (c === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (c >= 0xe1 && c <= 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (c === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xf1 && c <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

/**
 * A name for messages: as is when plain, else quoted, with each byte that is not UTF-8 as \xNN
 * and control characters made printable.
 */
export function displayName(name: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
  if (!/[\x00-\x1f\x7f-\x9f\udc80-\udcff]/.test(name)) return name;
  const bytes = name.replace(/[\udc80-\udcff]/g, (c) => `\\x${(c.charCodeAt(0) - 0xdc00).toString(16)}`);
  return `"${printable(bytes)}"`;
}
