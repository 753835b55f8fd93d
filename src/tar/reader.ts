import { ByteReader, type Seekable, TruncatedError } from "../util/byte-reader.js";
import { displayName, nameFromBytes } from "../util/name-bytes.js";
import {
  BLOCK,
  decimal,
  type HeaderBlock,
  isZeroBlock,
  numberField,
  parseHeader,
  parsePax,
  TarFormatError,
} from "./header.js";

/*
 * A streaming tar reader written for images from strangers. tar-stream (used before) decodes
 * PAX values as UTF-8 (so non-UTF-8 names merge), ignores PAX uid/gid/mtime, hides the raw
 * header GNU sparse maps live in and reads GNU sparse extension blocks as file data; no kept
 * library reads sparse files, so this one does it all, checking every number it takes.
 *
 * Where formats leave a choice (which name wins, where an archive ends, what is malformed),
 * it reads as Go's archive/tar does, since docker and containerd unpack with that: the same
 * archive must not mean one thing to them and another here. src/tar/go-parity.test.ts checks
 * this against Go itself and lists where slimroot refuses what Go accepts, and why.
 */

export type TarKind = "file" | "dir" | "symlink" | "link" | "char" | "block" | "fifo";

export interface TarEntry {
  kind: TarKind;
  /** Decoded with nameFromBytes: distinct byte names stay distinct strings. */
  name: string;
  linkname: string;
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch (may be negative). */
  mtime: number;
  /** Size of the file's content (a sparse file's full size, holes included). */
  size: number;
  devmajor: number;
  devminor: number;
  /** Extended attributes from PAX SCHILY.xattr.* / LIBARCHIVE.xattr.* records. */
  xattrs?: Map<string, Buffer>;
  /** Where a file's content lies in the archive, when it is stored whole (not sparse). */
  extent?: { offset: number; size: number };
  /** Exactly `size` bytes for files; read it before asking for the next entry, or leave it. */
  body: AsyncIterable<Buffer>;
}

/** Largest uid/gid an owner can have: (uid_t)-1 means "no owner" to chown. */
export const MAX_ID = 0xfffffffe;
/** PAX headers and GNU long names bigger than this are refused rather than buffered (as Go). */
const MAX_META = 1 << 20;
/** More runs than this in one sparse file is refused rather than held in memory. */
const MAX_SEGMENTS = 1 << 20;
/** A line of a GNU 1.0 sparse map longer than this is refused rather than buffered. */
const MAX_MAP_LINE = 4096;

const KINDS: Record<string, TarKind> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  S: "file",
  // A GNU volume label names the archive, not a file: read as a file (Go does), never yielded.
  V: "file",
  "1": "link",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "dir",
  "6": "fifo",
  // GNU dumpdir: a directory whose body lists its contents (for incremental restores).
  D: "dir",
};

const padding = (n: number) => (BLOCK - (n % BLOCK)) % BLOCK;

/** What the metadata members before an entry said about it. */
interface Pending {
  pax?: Map<string, Buffer>;
  longName?: Buffer;
  longLink?: Buffer;
}

/**
 * Entries of an uncompressed tar stream. Errors are TarFormatError (naming the entry when
 * known) or TruncatedError; tarErrorText turns either into the line to show. After the
 * end-of-archive blocks the rest of the stream is read and dropped, so a digest check at its
 * end still runs. A source that can seek (a file, see tar-index) is not read for bodies that
 * are left unread.
 */
export async function* readTar(input: AsyncIterable<Buffer> & Partial<Seekable>): AsyncGenerator<TarEntry> {
  const r = new ByteReader(input);
  let pending: Pending = {};
  let last: string | undefined;
  for (;;) {
    const at = r.offset;
    const block = await r.read(BLOCK);
    if (!block) return; // no end-of-archive blocks: tolerated, as GNU tar and Go do
    if (isZeroBlock(block)) {
      // Two zero blocks end the archive (one at the very end of the stream does too); one
      // followed by a header is a corrupt archive to Go, not an end with a hidden rest.
      const next = await r.read(BLOCK);
      if (next && !isZeroBlock(next)) {
        throw new TarFormatError(`a single zero block at byte ${at} is followed by more data`, last);
      }
      await r.drain();
      return;
    }
    const h = parseHeader(block, at);
    const metaName = () => displayName(nameFromBytes(pending.longName ?? h.name));
    // Go refuses a negative size in the header itself, whatever a PAX size says after it,
    // unless the typeflag alone says the entry has no data.
    if (h.size < 0 && !/^[1-6]$/.test(h.typeflag)) throw new TarFormatError("negative size", metaName());
    const meta = async () => {
      if (h.size > MAX_META)
        throw new TarFormatError(`${h.size}-byte extended header is too large`, metaName());
      const data = await r.must(h.size);
      await r.skipSome(padding(h.size)); // an archive may end inside the last padding (Go)
      return data;
    };
    switch (h.typeflag) {
      case "x":
        pending.pax = parsePax(await meta(), metaName());
        continue;
      case "g":
        // Checked, then ignored: Go's archive/tar returns it as an entry of its own (so what
        // came before it applies to nothing) and docker and containerd skip it.
        parsePax(await meta(), metaName());
        pending = {};
        continue;
      case "L":
        pending.longName = longText(await meta());
        continue;
      case "K":
        pending.longLink = longText(await meta());
        continue;
    }
    const entry = buildEntry(h, pending);
    pending = {};
    const { body, dataStart } = await bodyOf(r, h, entry);
    const { stored, sparse, ...rest } = entry;
    // Data that is not a file's content (a dumpdir's list, a label's) is passed over first, so
    // an archive cut short there is refused before the entry is used, as Go reading it would.
    if (rest.kind !== "file") await r.skip(dataStart + stored - r.offset);
    if (h.typeflag !== "V") {
      const extent = rest.kind === "file" && !sparse ? { extent: { offset: dataStart, size: stored } } : {};
      yield { ...rest, ...extent, body };
      last = displayName(rest.name);
    }
    await r.skip(dataStart + stored - r.offset);
    await r.skipSome(padding(stored));
  }
}

/** The one line that says what is wrong with an archive; `current` is the entry being read. */
export function tarErrorText(err: unknown, current: string | undefined): string | undefined {
  if (err instanceof TruncatedError) {
    return current
      ? `truncated tar: entry ${current} is cut short`
      : `truncated tar: ${err.message.replace(/^truncated/, "cut")}`;
  }
  if (err instanceof TarFormatError) {
    return err.entry !== undefined ? `entry ${err.entry}: ${err.message}` : err.message;
  }
  return undefined;
}

/** A GNU long name or link without the NULs that end it; empty means none (as Go). */
function longText(b: Buffer): Buffer | undefined {
  let end = b.length;
  while (end > 0 && b[end - 1] === 0) end--;
  return end ? b.subarray(0, end) : undefined;
}

function paxInteger(pax: Map<string, Buffer>, key: string, max: number, entry: string): number | undefined {
  const v = pax.get(key);
  if (v === undefined) return undefined;
  const text = v.toString("latin1");
  const n = decimal(text);
  if (n === undefined || n < 0 || n > max) {
    throw new TarFormatError(`pax ${key} ${JSON.stringify(text)} is out of range (0 to ${max})`, entry);
  }
  return n;
}

/** A PAX time ("-12.5"), as Go's parsePAXTime reads it, in whole seconds rounded down. */
function paxTime(pax: Map<string, Buffer>, key: string, entry: string): number | undefined {
  const text = pax.get(key)?.toString("latin1");
  if (text === undefined) return undefined;
  const dot = text.indexOf(".");
  const secs = decimal(dot < 0 ? text : text.slice(0, dot));
  const frac = dot < 0 ? "" : text.slice(dot + 1);
  if (secs === undefined || !/^[0-9]*$/.test(frac)) {
    throw new TarFormatError(`pax ${key} ${JSON.stringify(text)} is out of range`, entry);
  }
  // Go keeps nanoseconds (nine digits); a negative time with some is one second earlier.
  return text.startsWith("-") && /[1-9]/.test(frac.slice(0, 9)) ? secs - 1 : secs;
}

/** A name or link target: no NUL byte anywhere (the kernel and cpio would cut it there). */
function nameOf(bytes: Buffer, what: string, entry: string): string {
  if (bytes.includes(0)) {
    throw new TarFormatError(`${what} contains a NUL byte`, entry);
  }
  return nameFromBytes(bytes);
}

type SparseFormat = "old" | "0.x" | "1.0";

/** Which GNU sparse format an entry is stored in (Go's readGNUSparsePAXHeaders). */
function sparseFormat(h: HeaderBlock, pax: Map<string, Buffer>): SparseFormat | undefined {
  if (h.typeflag === "S") return "old";
  const major = pax.get("GNU.sparse.major")?.toString("latin1") ?? "";
  const minor = pax.get("GNU.sparse.minor")?.toString("latin1") ?? "";
  if (major === "0" && (minor === "0" || minor === "1")) return "0.x";
  if (major === "1" && minor === "0") return "1.0";
  if (major !== "" || minor !== "") return undefined; // a version nobody wrote: stored plain
  return pax.has("GNU.sparse.map") ? "0.x" : undefined;
}

type Built = Omit<TarEntry, "body"> & { stored: number; sparse?: SparseFormat; pax: Map<string, Buffer> };

function buildEntry(h: HeaderBlock, pending: Pending): Built {
  const pax = pending.pax ?? new Map<string, Buffer>();
  // Go's order: the header, then PAX path, then a GNU long name, then a sparse file's own name.
  let rawName = pending.longName ?? pax.get("path") ?? h.name;
  const rawLink = pending.longLink ?? pax.get("linkpath") ?? h.linkname;
  let display = displayName(nameFromBytes(rawName));
  let kind: TarKind | undefined = KINDS[h.typeflag];
  if (kind === undefined) {
    const flag = /^[\x21-\x7e]$/.test(h.typeflag) ? h.typeflag : JSON.stringify(h.typeflag);
    throw new TarFormatError(`unsupported tar entry type '${flag}'`, display);
  }
  // Pre-POSIX tars (typeflag NUL) mark directories by a trailing slash only (as Go's reader,
  // and so containerd, reads them).
  if (h.typeflag === "\0" && rawName[rawName.length - 1] === 0x2f) kind = "dir";
  const sparse = sparseFormat(h, pax);
  const sparseName = sparse && sparse !== "old" ? pax.get("GNU.sparse.name") : undefined;
  if (sparseName) {
    rawName = sparseName;
    display = displayName(nameFromBytes(rawName));
  }
  const name = nameOf(rawName, "name", display);
  const linkname = nameOf(rawLink, "link target", display);
  // Every time PAX gives is checked, as Go does, though only mtime is kept.
  paxTime(pax, "atime", display);
  paxTime(pax, "ctime", display);
  const mtime = paxTime(pax, "mtime", display) ?? h.mtime;
  const uid = paxInteger(pax, "uid", MAX_ID, display) ?? h.uid;
  const gid = paxInteger(pax, "gid", MAX_ID, display) ?? h.gid;
  for (const [what, v, max] of [
    ["uid", uid, MAX_ID],
    ["gid", gid, MAX_ID],
    ["devmajor", h.devmajor, 0xffffffff],
    ["devminor", h.devminor, 0xffffffff],
  ] as const) {
    if (v < 0 || v > max) throw new TarFormatError(`${what} ${v} is out of range (0 to ${max})`, display);
  }
  // Links, devices, fifos and directories are header-only whatever their size field says,
  // as Go's archive/tar (containerd, docker) reads them: a parser that skipped "their data"
  // would see different entries than the runtimes do.
  // An old-style directory (NUL typeflag, trailing slash) is one of these too (Go decides after
  // renaming it).
  const headerOnly = /^[1-6]$/.test(h.typeflag) || (h.typeflag === "\0" && kind === "dir");
  const sizeText = pax.get("size")?.toString("latin1");
  // Go checks that a PAX size is a number everywhere, and that it is not negative where it counts.
  if (headerOnly && sizeText !== undefined && decimal(sizeText) === undefined) {
    throw new TarFormatError(`pax size ${JSON.stringify(sizeText)} is malformed`, display);
  }
  const stored = headerOnly ? 0 : (paxInteger(pax, "size", Number.MAX_SAFE_INTEGER, display) ?? h.size);
  for (const [what, v] of [
    ["size", stored],
    ["mtime", mtime],
  ] as const) {
    if (!Number.isSafeInteger(v)) throw new TarFormatError(`${what} ${v} is out of range`, display);
  }
  if (stored < 0) throw new TarFormatError("negative size", display);
  let size = stored;
  if (sparse && headerOnly) throw new TarFormatError("sparse map on an entry that has no data", display);
  if (sparse === "old") {
    if (h.format !== "gnu") throw new TarFormatError("GNU sparse entry without a GNU header", display);
    size = numberField(h.block, 483, 12, "sparse real size", display);
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new TarFormatError(`sparse real size ${size} is out of range`, display);
    }
  } else if (sparse) {
    const key = pax.has("GNU.sparse.size") ? "GNU.sparse.size" : "GNU.sparse.realsize";
    size = paxInteger(pax, key, Number.MAX_SAFE_INTEGER, display) ?? size;
  }
  return {
    kind,
    name,
    linkname,
    mode: h.mode,
    uid,
    gid,
    mtime,
    size: kind === "file" ? size : 0,
    stored,
    ...(sparse ? { sparse } : {}),
    pax,
    devmajor: h.devmajor,
    devminor: h.devminor,
    ...xattrsOf(pax, display),
  };
}

/** libarchive's url_decode: %XX is a byte, any other % is itself. */
function percentDecode(text: Buffer): Buffer {
  const out: number[] = [];
  const hex = (c: number | undefined) =>
    c !== undefined && /[0-9a-fA-F]/.test(String.fromCharCode(c))
      ? Number.parseInt(String.fromCharCode(c), 16)
      : -1;
  for (let i = 0; i < text.length; ) {
    const hi = hex(text[i + 1]);
    const lo = hex(text[i + 2]);
    if (text[i] === 0x25 && hi >= 0 && lo >= 0) {
      out.push(hi * 16 + lo);
      i += 3;
    } else out.push(text[i++]!);
  }
  return Buffer.from(out);
}

/**
 * xattrs from SCHILY.xattr.NAME (raw value: what Go, so docker, reads) and libarchive's
 * LIBARCHIVE.xattr.URL-ENCODED-NAME (base64 value; Go ignores them); SCHILY wins a tie. A name
 * is a C string: bytes without NUL, kept as bytes (surrogateescape, tree/path.ts), so two names
 * that differ only in bytes that are not UTF-8 stay two attributes.
 */
function xattrsOf(pax: Map<string, Buffer>, entry: string): { xattrs?: Map<string, Buffer> } {
  let xattrs: Map<string, Buffer> | undefined;
  const add = (raw: Buffer, data: Buffer) => {
    const name = nameFromBytes(raw);
    if (!name || name.includes("\0"))
      throw new TarFormatError(`bad xattr name ${displayName(nameFromBytes(raw))}`, entry);
    xattrs ??= new Map();
    xattrs.set(name, data);
  };
  for (const [key, value] of pax) {
    if (key.startsWith("LIBARCHIVE.xattr.")) {
      add(
        percentDecode(Buffer.from(key.slice(17), "latin1")),
        Buffer.from(value.toString("latin1"), "base64"),
      );
    }
  }
  for (const [key, value] of pax) {
    // A copy: the value is a view into a read chunk the tree must not keep alive.
    if (key.startsWith("SCHILY.xattr.")) add(Buffer.from(key.slice(13), "latin1"), Buffer.from(value));
  }
  return xattrs ? { xattrs } : {};
}

interface Segment {
  offset: number;
  numbytes: number;
}

/**
 * The entry's content: stored bytes, or a sparse file's segments with its holes as zeros.
 * Sparse maps are read and checked for any entry that has data (as Go), used for files.
 */
async function bodyOf(
  r: ByteReader,
  h: HeaderBlock,
  e: Built,
): Promise<{ body: AsyncIterable<Buffer>; dataStart: number }> {
  const entry = displayName(e.name);
  const start = r.offset;
  const malformed = (what = "") => new TarFormatError(`malformed sparse map${what}`, entry);
  const num = (text: string, what: string) => {
    const v = decimal(text);
    if (v === undefined) throw malformed(` (${what} ${JSON.stringify(text)})`);
    return v;
  };
  let map: Segment[] | undefined;
  if (e.sparse === "old") {
    map = [];
    const take = (block: Buffer, start: number, count: number) => {
      for (let i = 0; i < count; i++) {
        const at = start + i * 24;
        if (block[at] === 0) break;
        map!.push({
          offset: numberField(block, at, 12, "sparse offset", entry),
          numbytes: numberField(block, at + 12, 12, "sparse length", entry),
        });
      }
    };
    take(h.block, 386, 4);
    let extended = h.block[482] !== 0;
    // Extension blocks come before the data and are not counted in its size.
    while (extended) {
      if (map.length > MAX_SEGMENTS) throw new TarFormatError("sparse map has too many segments", entry);
      const ext = await r.must(BLOCK);
      take(ext, 0, 21);
      extended = ext[504] !== 0;
    }
  } else if (e.sparse === "1.0") {
    // The map is decimal text at the start of the data, in whole blocks.
    let text = "";
    const nextLine = async () => {
      for (;;) {
        const nl = text.indexOf("\n");
        if (nl >= 0) {
          const line = text.slice(0, nl);
          text = text.slice(nl + 1);
          return line;
        }
        if (r.offset - start + BLOCK > e.stored || text.length > MAX_MAP_LINE) throw malformed();
        text += (await r.must(BLOCK)).toString("latin1");
      }
    };
    const count = num(await nextLine(), "count");
    if (count < 0) throw malformed();
    if (count > MAX_SEGMENTS) throw new TarFormatError("sparse map has too many segments", entry);
    map = [];
    for (let i = 0; i < count; i++) {
      map.push({ offset: num(await nextLine(), "offset"), numbytes: num(await nextLine(), "length") });
    }
  } else if (e.sparse === "0.x") {
    const count = num(e.pax.get("GNU.sparse.numblocks")?.toString("latin1") ?? "", "numblocks");
    const text = e.pax.get("GNU.sparse.map")?.toString("latin1") ?? "";
    const parts = text === "" ? [] : text.split(",");
    if (count < 0 || parts.length !== 2 * count) throw malformed(" (numblocks does not match the map)");
    if (count > MAX_SEGMENTS) throw new TarFormatError("sparse map has too many segments", entry);
    map = [];
    for (let i = 0; i < parts.length; i += 2)
      map.push({ offset: num(parts[i]!, "offset"), numbytes: num(parts[i + 1]!, "length") });
  }
  const dataStart = e.sparse === "1.0" ? start : r.offset;
  if (!map) return { body: e.kind === "file" ? r.stream(e.stored) : nothing(), dataStart };
  const data = e.sparse === "1.0" ? e.stored - (r.offset - start) : e.stored;
  let pos = 0;
  let total = 0;
  for (const s of map) {
    if (s.offset < pos || s.numbytes < 0 || s.offset + s.numbytes > e.size) {
      throw malformed(" (segments overlap or pass the file's end)");
    }
    pos = s.offset + s.numbytes;
    total += s.numbytes;
  }
  if (total !== data) throw malformed(` (${total} bytes mapped, ${data} stored)`);
  return { body: e.kind === "file" ? expand(r, map, e.size) : nothing(), dataStart };
}

async function* nothing(): AsyncGenerator<Buffer> {}

const ZEROS = Buffer.alloc(64 * 1024);

function* zeros(n: number): Generator<Buffer> {
  for (; n > 0; n -= ZEROS.length) yield n >= ZEROS.length ? ZEROS : ZEROS.subarray(0, n);
}

async function* expand(r: ByteReader, map: Segment[], size: number): AsyncGenerator<Buffer> {
  let pos = 0;
  for (const { offset, numbytes } of map) {
    yield* zeros(offset - pos);
    yield* r.stream(numbytes);
    pos = offset + numbytes;
  }
  yield* zeros(size - pos);
}

export { TarFormatError } from "./header.js";
