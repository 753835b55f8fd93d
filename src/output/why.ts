/**
 * OUTPUT.why, the sidecar that says why each path is in an image (docs/why.md): the one
 * module that writes and reads it. JSON lines, so no name can forge a line or a field: a
 * header object, then one object per path. A name or reason that is not valid UTF-8 (a
 * surrogateescape string, see util/name-bytes.ts) is stored as its bytes in base64 (`pathBase64`,
 * `whyBase64`) instead of as text, so every byte round-trips and every JSON reader can parse
 * the file. The header records the sha256 of the image it was written with; a reader uses
 * the file only for that image.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { printable, UserError } from "../util/errors.js";
import { readHead, readInputText } from "../util/input-file.js";
import { nameBytes, nameFromBytes } from "../util/name-bytes.js";
import { whyPath } from "./output.js";

/** The first line's `type`, and the version this module writes and reads. */
export const WHY_TYPE = "slimroot.why";
export const WHY_VERSION = 2;

/** What the header records about the build (inspect shows it). */
export interface WhyHeader {
  /** The --format it was written for. */
  format: string;
  /** The compressor and its version (cpio), or the disk format. */
  compressor?: string;
  /** cpio: the sha256 of the cpio before compression, the same whatever compressed it. */
  cpioSha256?: string;
  /** The sha256 of the image file as written; readers check it. */
  imageSha256?: string;
  /**
   * build --layers: the image is these archives one after another, each compressed on its own
   * (cpio/parts.ts); push sends each as its own layer (docs/push.md).
   */
  parts?: WhyPart[];
  /**
   * cpio: what the archive takes unpacked in the guest's rootfs (cpio/footprint.ts), so that
   * `run` sizes the guest's memory without decompressing the image again.
   */
  footprint?: WhyFootprint;
}

/** The footprint as recorded: bytes at 4 KiB pages, inodes, bytes at each larger page size. */
export interface WhyFootprint {
  tmpfsBytes: number;
  inodes: number;
  largePages: Readonly<Record<number, number>>;
}

/** One archive of a layered initramfs: which layer it holds, its size and sha256 in the file. */
export interface WhyPart {
  name: string;
  bytes: number;
  sha256: string;
  /** A part of one Debian package's files (cpio/parts.ts): dpkg's name for it and its version. */
  package?: string;
  version?: string;
}

export interface Why {
  header: WhyHeader;
  /** Image path ("" for the root, no leading "/") -> why it is in. */
  reasons: Map<string, string>;
  /** Absolute paths the app looked up during its trace that the image did not have: nothing was kept for them. */
  missing: string[];
}

/** A .why that is not there: the one problem an optional reader stays quiet about. */
export class WhyMissing extends UserError {}

/** A larger .why is not one slimroot wrote (about 100 bytes a path). */
export const MAX_WHY_BYTES = 256 * 1024 * 1024;

// A lone surrogate (from a byte that is not UTF-8) cannot be written as JSON text that every
// reader takes: such a string goes as its bytes instead.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function textField(key: string, value: string): Record<string, string> {
  return LONE_SURROGATE.test(value)
    ? { [`${key}Base64`]: nameBytes(value).toString("base64") }
    : { [key]: value };
}

/**
 * The .why's text: the header line, then a line per path in the order given, then a
 * `{"missing": "/path"}` line per failed lookup of a trace (what a user reads when the app
 * misbehaves: the file it looked for and did not find, in the whole image too).
 */
export function encodeWhy(
  header: WhyHeader,
  entries: Iterable<readonly [string, string]>,
  missing: readonly string[] = [],
): string {
  const lines = [JSON.stringify({ type: WHY_TYPE, version: WHY_VERSION, ...header })];
  for (const [path, why] of entries)
    lines.push(JSON.stringify({ ...textField("path", `/${path}`), ...textField("why", why) }));
  for (const path of missing) lines.push(JSON.stringify(textField("missing", path)));
  return `${lines.join("\n")}\n`;
}

const HEADER_KEYS = ["format", "compressor", "cpioSha256", "imageSha256"] as const;
const SHA256 = /^[0-9a-f]{64}$/;

/** One of `key` (UTF-8 text) or `keyBase64` (bytes), as a surrogateescape string. */
function readTextField(o: Record<string, unknown>, key: string, where: string): string {
  const text = o[key];
  const b64 = o[`${key}Base64`];
  if (typeof text === "string" && b64 === undefined) {
    if (LONE_SURROGATE.test(text)) throw new UserError(`${where}: "${key}" is not valid UTF-8 text`);
    return text;
  }
  if (typeof b64 === "string" && text === undefined) {
    const bytes = Buffer.from(b64, "base64");
    if (bytes.toString("base64") !== b64) throw new UserError(`${where}: "${key}Base64" is not base64`);
    return nameFromBytes(bytes);
  }
  throw new UserError(`${where}: expected a string "${key}" or "${key}Base64"`);
}

function parseLine(line: string, where: string): Record<string, unknown> {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    throw new UserError(`${where}: not a JSON object`);
  }
  if (typeof o !== "object" || o === null || Array.isArray(o))
    throw new UserError(`${where}: not a JSON object`);
  return o as Record<string, unknown>;
}

function readParts(v: unknown, where: string): WhyPart[] {
  const bad = () => new UserError(`${where}: bad "parts"`);
  if (!Array.isArray(v) || v.length === 0) throw bad();
  return v.map((p: unknown) => {
    const o = p as Record<string, unknown>;
    if (typeof o !== "object" || o === null || typeof o.name !== "string") throw bad();
    if (!Number.isSafeInteger(o.bytes) || (o.bytes as number) <= 0) throw bad();
    if (typeof o.sha256 !== "string" || !SHA256.test(o.sha256)) throw bad();
    const pkg = typeof o.package === "string" && typeof o.version === "string";
    if (!pkg && (o.package !== undefined || o.version !== undefined)) throw bad();
    return {
      name: o.name,
      bytes: o.bytes as number,
      sha256: o.sha256,
      ...(pkg ? { package: o.package as string, version: o.version as string } : {}),
    };
  });
}

function readFootprint(v: unknown, where: string): WhyFootprint {
  const bad = () => new UserError(`${where}: bad "footprint"`);
  const count = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;
  const o = v as Record<string, unknown>;
  if (typeof o !== "object" || o === null || !count(o.tmpfsBytes) || !count(o.inodes)) throw bad();
  const large = o.largePages as Record<string, unknown>;
  if (typeof large !== "object" || large === null || Array.isArray(large)) throw bad();
  const largePages: Record<number, number> = {};
  for (const [k, n] of Object.entries(large)) {
    if (!/^[1-9][0-9]{0,9}$/.test(k) || !count(n)) throw bad();
    largePages[Number(k)] = n as number;
  }
  return { tmpfsBytes: o.tmpfsBytes as number, inodes: o.inodes as number, largePages };
}

/** Parses a .why's text (`file` names it in messages); anything not as written is refused. */
export function parseWhy(text: string, file: string): Why {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const first = lines[0] ?? "";
  const h = first.startsWith("{") ? parseLine(first, `${file}: line 1`) : {};
  if (h.type !== WHY_TYPE || h.version !== WHY_VERSION)
    throw new UserError(
      `${file}: not a ${WHY_TYPE} version ${WHY_VERSION} file (an older slimroot's .why, whose names could forge its lines, is not read: rebuild the image)`,
    );
  const header: WhyHeader = { format: "" };
  for (const k of HEADER_KEYS) {
    const v = h[k];
    if (v === undefined) continue;
    if (typeof v !== "string" || (k.endsWith("Sha256") && !SHA256.test(v)))
      throw new UserError(`${file}: line 1: bad "${k}"`);
    header[k] = v;
  }
  if (h.parts !== undefined) header.parts = readParts(h.parts, `${file}: line 1`);
  if (h.footprint !== undefined) header.footprint = readFootprint(h.footprint, `${file}: line 1`);
  const reasons = new Map<string, string>();
  const missing: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const where = `${file}: line ${i + 1}`;
    const o = parseLine(lines[i]!, where);
    if (o.missing !== undefined || o.missingBase64 !== undefined) {
      missing.push(readTextField(o, "missing", where));
      continue;
    }
    const path = readTextField(o, "path", where);
    if (!path.startsWith("/")) throw new UserError(`${where}: the path does not start with /`);
    const key = path.slice(1);
    if (reasons.has(key)) throw new UserError(`${where}: /${printable(key)} is listed twice`);
    reasons.set(key, readTextField(o, "why", where));
  }
  return { header, reasons, missing };
}

/** Reads IMAGE.why: a regular file of bounded size, never opened if it could block (a FIFO). */
export async function readWhy(image: string): Promise<Why> {
  const file = whyPath(image);
  const st = await stat(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT")
      throw new WhyMissing(`${file}: no such file (it is written by slimroot build next to the image)`);
    throw new UserError(`${file}: ${err.code ?? err.message}`);
  });
  // Its type (never a FIFO or a device) is checked as it is opened, by readInputText.
  if (st.size > MAX_WHY_BYTES)
    throw new UserError(`${file}: ${st.size} bytes, more than a .why can be (${MAX_WHY_BYTES})`);
  return parseWhy(await readInputText(file), file);
}

/** A .why's first line is its header: a larger one is not one slimroot wrote. */
const MAX_HEADER_BYTES = 1024 * 1024;

/**
 * The header of IMAGE.why when the .why was written with `image` as it is now (its sha256
 * matches), else undefined, quietly (no .why, another build's, not one slimroot wrote): for a
 * reader that takes a shortcut with it and otherwise reads the image itself.
 */
export async function matchingWhyHeader(image: string): Promise<WhyHeader | undefined> {
  const file = whyPath(image);
  try {
    // Read as any input (never a FIFO or a device), and only its first line.
    const head = await readHead(file, MAX_HEADER_BYTES);
    const end = head.indexOf(0x0a);
    if (end < 0) return undefined;
    const { header } = parseWhy(head.subarray(0, end).toString(), file);
    if (!header.imageSha256 || header.imageSha256 !== (await fileSha256(image))) return undefined;
    return header;
  } catch {
    return undefined;
  }
}

/** The sha256 of a file, streamed. */
export async function fileSha256(file: string, range?: { start: number; bytes: number }): Promise<string> {
  const hash = createHash("sha256");
  const r = range ? { start: range.start, end: range.start + range.bytes - 1 } : {};
  for await (const chunk of createReadStream(file, r)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/**
 * Refuses a .why that was not written with `image` as it is now (its sha256 is `sha256`): its
 * reasons and header would describe another build.
 */
export function checkWhyImage(why: Why, image: string, sha256: string): void {
  const recorded = why.header.imageSha256;
  if (recorded === undefined)
    throw new UserError(
      `${whyPath(image)}: records no image sha256, so it cannot be checked against ${image}`,
    );
  if (recorded !== sha256)
    throw new UserError(
      `${whyPath(image)}: written for another image (sha256 ${recorded.slice(0, 12)}..., ${image} is ${sha256.slice(0, 12)}...)`,
    );
}
