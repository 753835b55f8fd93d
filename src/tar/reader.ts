import { displayName, nameFromBytes } from "../tree/path.js";
import { ByteReader } from "../util/byte-reader.js";
import {
  BLOCK,
  type HeaderBlock,
  lastValues,
  numberField,
  type PaxRecord,
  parseHeader,
  parsePax,
  TarFormatError,
  trimNuls,
} from "./header.js";

/*
 * A streaming tar reader written for images from strangers. tar-stream (used before) decodes
 * PAX values as UTF-8 (so non-UTF-8 names merge), ignores PAX uid/gid/mtime, hides the raw
 * header GNU sparse maps live in and reads GNU sparse extension blocks as file data; no kept
 * library reads sparse files, so this one does it all, checking every number it takes.
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
  /** Exactly `size` bytes for files; read it before asking for the next entry, or leave it. */
  body: AsyncIterable<Buffer>;
}

/** Largest uid/gid an owner can have: (uid_t)-1 means "no owner" to chown. */
export const MAX_ID = 0xfffffffe;
/** PAX headers and GNU long names bigger than this are refused rather than buffered. */
const MAX_META = 1 << 20;
/** More runs than this in one sparse file is refused rather than held in memory. */
const MAX_SEGMENTS = 1 << 20;

const KINDS: Record<string, TarKind> = {
  "0": "file",
  "\0": "file",
  "7": "file",
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

/**
 * Entries of an uncompressed tar stream. Errors are TarFormatError (naming the entry when
 * known) or TruncatedError. After the end-of-archive block the rest of the stream is read
 * and dropped, so a digest check at its end still runs.
 */
export async function* readTar(input: AsyncIterable<Buffer>): AsyncGenerator<TarEntry> {
  const r = new ByteReader(input);
  let pax: PaxRecord[] | undefined;
  let longName: Buffer | undefined;
  let longLink: Buffer | undefined;
  for (;;) {
    const block = await r.read(BLOCK);
    if (!block) return; // no end-of-archive blocks: tolerated, as GNU tar does
    const h = parseHeader(block);
    if (!h) {
      await r.drain();
      return;
    }
    const rawName = () => displayName(nameFromBytes(longName ?? h.name));
    const meta = async () => {
      if (h.size > MAX_META)
        throw new TarFormatError(`${h.size}-byte extended header is too large`, rawName());
      const data = await r.must(h.size);
      await r.skip(padding(h.size));
      return data;
    };
    switch (h.typeflag) {
      case "x":
      case "X":
        pax = parsePax(await meta(), rawName());
        continue;
      case "g":
        // Checked, then ignored: Go's archive/tar does not carry global records over to the
        // entries after them, so docker and containerd unpack as if they were not there.
        parsePax(await meta(), rawName());
        continue;
      case "L":
        longName = trimNuls(await meta());
        continue;
      case "K":
        longLink = trimNuls(await meta());
        continue;
      case "V": // GNU volume label: names the archive, not a file.
        await r.skip(h.size + padding(h.size));
        continue;
    }
    const records = pax ?? [];
    const entry = buildEntry(h, records, longName, longLink);
    pax = longName = longLink = undefined;
    const { body, dataStart } = await bodyOf(r, h, entry, records);
    const { stored, ...rest } = entry;
    yield { ...rest, body };
    await r.skip(dataStart + stored + padding(stored) - r.offset);
  }
}

function paxInteger(pax: Map<string, Buffer>, key: string, max: number, entry: string): number | undefined {
  const v = pax.get(key);
  if (v === undefined) return undefined;
  const text = v.toString("latin1");
  if (!/^[0-9]+$/.test(text) || Number(text) > max) {
    throw new TarFormatError(`pax ${key} ${JSON.stringify(text)} is out of range (0 to ${max})`, entry);
  }
  return Number(text);
}

/** A name or link target: no NUL byte anywhere (the kernel and cpio would cut it there). */
function nameOf(bytes: Buffer, what: string, entry: string): string {
  if (bytes.includes(0)) {
    throw new TarFormatError(`${what} contains a NUL byte`, entry);
  }
  return nameFromBytes(bytes);
}

function buildEntry(
  h: HeaderBlock,
  records: PaxRecord[],
  longName: Buffer | undefined,
  longLink: Buffer | undefined,
): Omit<TarEntry, "body"> & { stored: number } {
  const pax = lastValues(records);
  const sparseName = pax.get("GNU.sparse.name");
  const rawName = sparseName ?? pax.get("path") ?? longName ?? h.name;
  const display = displayName(nameFromBytes(rawName));
  const name = nameOf(rawName, "name", display);
  const linkname = nameOf(pax.get("linkpath") ?? longLink ?? h.linkname, "link target", display);
  let kind: TarKind | undefined = h.typeflag === "S" ? "file" : KINDS[h.typeflag];
  if (kind === undefined) {
    const flag = /^[\x21-\x7e]$/.test(h.typeflag) ? h.typeflag : JSON.stringify(h.typeflag);
    throw new TarFormatError(`unsupported tar entry type '${flag}'`, display);
  }
  // Pre-POSIX tars (typeflag NUL) mark directories by a trailing slash only (as Go's reader,
  // and so containerd, reads them).
  if (h.typeflag === "\0" && rawName[rawName.length - 1] === 0x2f) kind = "dir";
  const mtimeText = pax.get("mtime")?.toString("latin1");
  let mtime = h.mtime;
  if (mtimeText !== undefined) {
    if (!/^-?[0-9]{1,15}(\.[0-9]*)?$/.test(mtimeText)) {
      throw new TarFormatError(`pax mtime ${JSON.stringify(mtimeText)} is out of range`, display);
    }
    mtime = Math.floor(Number(mtimeText));
  }
  const uid = paxInteger(pax, "uid", MAX_ID, display) ?? h.uid;
  const gid = paxInteger(pax, "gid", MAX_ID, display) ?? h.gid;
  if (uid > MAX_ID) throw new TarFormatError(`uid ${uid} is out of range (0 to ${MAX_ID})`, display);
  if (gid > MAX_ID) throw new TarFormatError(`gid ${gid} is out of range (0 to ${MAX_ID})`, display);
  for (const key of ["uname", "gname"]) {
    if (pax.get(key)?.includes(0)) throw new TarFormatError(`pax ${key} contains a NUL byte`, display);
  }
  for (const [what, v] of [
    ["devmajor", h.devmajor],
    ["devminor", h.devminor],
  ] as const) {
    if (v > 0xffffffff) throw new TarFormatError(`${what} ${v} is out of range`, display);
  }
  // Links, devices, fifos and directories are header-only whatever their size field says,
  // as Go's archive/tar (containerd, docker) reads them: a parser that skipped "their data"
  // would see different entries than the runtimes do.
  const headerOnly = /^[1-6]$/.test(h.typeflag);
  const stored = headerOnly ? 0 : (paxInteger(pax, "size", Number.MAX_SAFE_INTEGER, display) ?? h.size);
  let size = kind === "file" ? stored : 0;
  if (h.typeflag === "S") size = numberField(h.block, 483, 12, "sparse real size");
  else if (pax.has("GNU.sparse.realsize") || pax.has("GNU.sparse.size")) {
    size =
      paxInteger(pax, "GNU.sparse.realsize", Number.MAX_SAFE_INTEGER, display) ??
      paxInteger(pax, "GNU.sparse.size", Number.MAX_SAFE_INTEGER, display)!;
  }
  return {
    kind,
    name,
    linkname,
    mode: h.mode,
    uid,
    gid,
    mtime,
    size,
    stored,
    devmajor: h.devmajor,
    devminor: h.devminor,
    ...xattrsOf(records, display),
  };
}

function xattrsOf(records: PaxRecord[], entry: string): { xattrs?: Map<string, Buffer> } {
  let xattrs: Map<string, Buffer> | undefined;
  for (const [key, value] of records) {
    let name: string;
    let data: Buffer;
    if (key.startsWith("SCHILY.xattr.")) {
      name = key.slice(13);
      // A copy: the value is a view into a read chunk the tree must not keep alive.
      data = Buffer.from(value);
    } else if (key.startsWith("LIBARCHIVE.xattr.")) {
      name = decodeURIComponent(key.slice(17));
      data = Buffer.from(value.toString("latin1"), "base64");
    } else continue;
    if (!name || name.includes("\0"))
      throw new TarFormatError(`bad xattr name ${JSON.stringify(name)}`, entry);
    xattrs ??= new Map();
    xattrs.set(name, data);
  }
  return xattrs ? { xattrs } : {};
}

interface Segment {
  offset: number;
  numbytes: number;
}

/** The entry's content: stored bytes, or a sparse file's segments with its holes as zeros. */
async function bodyOf(
  r: ByteReader,
  h: HeaderBlock,
  e: Omit<TarEntry, "body"> & { stored: number },
  records: PaxRecord[],
): Promise<{ body: AsyncIterable<Buffer>; dataStart: number }> {
  if (e.kind !== "file") return { body: nothing(), dataStart: r.offset };
  const pax = lastValues(records);
  let map: Segment[] | undefined;
  let data = e.stored;
  const entry = displayName(e.name);
  const start = r.offset;
  const num = (text: string, what: string) => {
    if (!/^[0-9]{1,16}$/.test(text) || Number(text) > Number.MAX_SAFE_INTEGER)
      throw new TarFormatError(`malformed sparse map (${what} ${JSON.stringify(text)})`, entry);
    return Number(text);
  };
  if (h.typeflag === "S") {
    map = [];
    const take = (block: Buffer, start: number, count: number) => {
      for (let i = 0; i < count; i++) {
        const at = start + i * 24;
        if (block[at] === 0) break;
        map!.push({
          offset: numberField(block, at, 12, "sparse offset"),
          numbytes: numberField(block, at + 12, 12, "sparse length"),
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
  } else if (pax.get("GNU.sparse.major")?.toString() === "1") {
    // Format 1.0: the map is decimal text at the start of the data, padded to a block.
    let text = "";
    const nextLine = async () => {
      for (;;) {
        const nl = text.indexOf("\n");
        if (nl >= 0) {
          const line = text.slice(0, nl);
          text = text.slice(nl + 1);
          return line;
        }
        if (r.offset - start >= e.stored || text.length > 64)
          throw new TarFormatError("malformed sparse map", entry);
        text += (await r.must(BLOCK)).toString("latin1");
      }
    };
    const count = num(await nextLine(), "count");
    if (count > MAX_SEGMENTS) throw new TarFormatError("sparse map has too many segments", entry);
    map = [];
    for (let i = 0; i < count; i++) {
      map.push({ offset: num(await nextLine(), "offset"), numbytes: num(await nextLine(), "length") });
    }
    data = e.stored - (r.offset - start);
  } else if (pax.has("GNU.sparse.map")) {
    const parts = pax.get("GNU.sparse.map")!.toString("latin1").split(",");
    if (parts.length % 2) throw new TarFormatError("malformed sparse map (odd number of values)", entry);
    map = [];
    for (let i = 0; i < parts.length; i += 2)
      map.push({ offset: num(parts[i]!, "offset"), numbytes: num(parts[i + 1]!, "length") });
  } else if (pax.has("GNU.sparse.offset")) {
    // Format 0.0: repeated offset/numbytes records, in order.
    map = [];
    for (const [k, v] of records) {
      if (k === "GNU.sparse.offset") map.push({ offset: num(v.toString("latin1"), "offset"), numbytes: -1 });
      else if (k === "GNU.sparse.numbytes") {
        const last = map[map.length - 1];
        if (!last || last.numbytes !== -1) throw new TarFormatError("malformed sparse map", entry);
        last.numbytes = num(v.toString("latin1"), "length");
      }
    }
    if (map.some((s) => s.numbytes < 0)) throw new TarFormatError("malformed sparse map", entry);
  }
  const dataStart = h.typeflag === "S" ? r.offset : start;
  if (!map) return { body: r.stream(e.stored), dataStart };
  let pos = 0;
  let total = 0;
  for (const s of map) {
    if (s.offset < pos || s.offset + s.numbytes > e.size) {
      throw new TarFormatError("malformed sparse map (segments overlap or pass the file's end)", entry);
    }
    pos = s.offset + s.numbytes;
    total += s.numbytes;
  }
  if (total !== data) {
    throw new TarFormatError(`malformed sparse map (${total} bytes mapped, ${data} stored)`, entry);
  }
  return { body: expand(r, map, e.size), dataStart };
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
