/**
 * Reads a kernel module's `.modinfo` ELF section: NUL-separated `key=value` strings such as
 * `name=virtio_net` and `depends=virtio,virtio_ring,net_failover`. That is all depmod itself
 * uses, so no modules.dep is needed. Accepts ELF32/ELF64 of either byte order; every offset
 * is checked, so a corrupt or hostile file gives a ModinfoError and nothing else.
 */

export class ModinfoError extends Error {}

export interface ModInfo {
  /** `name=`, absent in very old modules. */
  name?: string;
  /** `depends=`, split on commas; empty when the module needs only the core kernel. */
  depends: string[];
  vermagic?: string;
  /** Every key=value pair in section order (keys such as `alias` repeat). */
  entries: [key: string, value: string][];
}

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);
const SHN_XINDEX = 0xffff;
const SHT_NOBITS = 8;

interface Layout {
  wide: boolean;
  little: boolean;
}

/** Reads unsigned integers of an ELF file, refusing anything past its end. */
class Reader {
  constructor(
    readonly buf: Buffer,
    readonly l: Layout,
  ) {}

  private need(off: number, len: number, what: string): void {
    if (!Number.isSafeInteger(off) || off < 0 || off + len > this.buf.length) {
      throw new ModinfoError(`truncated ELF file: ${what} at offset ${off} is past the end`);
    }
  }

  u16(off: number, what: string): number {
    this.need(off, 2, what);
    return this.l.little ? this.buf.readUInt16LE(off) : this.buf.readUInt16BE(off);
  }

  u32(off: number, what: string): number {
    this.need(off, 4, what);
    return this.l.little ? this.buf.readUInt32LE(off) : this.buf.readUInt32BE(off);
  }

  /** A file offset or size: 32 or 64 bits wide depending on the class. */
  word(off: number, what: string): number {
    if (!this.l.wide) return this.u32(off, what);
    this.need(off, 8, what);
    const v = this.l.little ? this.buf.readBigUInt64LE(off) : this.buf.readBigUInt64BE(off);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ModinfoError(`${what} ${v} is out of range`);
    return Number(v);
  }
}

interface Section {
  name: number;
  type: number;
  offset: number;
  size: number;
  link: number;
}

function sectionHeader(r: Reader, shoff: number, shentsize: number, i: number): Section {
  const base = shoff + i * shentsize;
  const what = `section header ${i}`;
  return r.l.wide
    ? {
        name: r.u32(base, what),
        type: r.u32(base + 4, what),
        offset: r.word(base + 24, what),
        size: r.word(base + 32, what),
        link: r.u32(base + 40, what),
      }
    : {
        name: r.u32(base, what),
        type: r.u32(base + 4, what),
        offset: r.u32(base + 16, what),
        size: r.u32(base + 20, what),
        link: r.u32(base + 24, what),
      };
}

/** The bytes of the section called `wanted`, or undefined if the file has none. */
export function findSection(buf: Buffer, wanted: string): Buffer | undefined {
  if (buf.length < 16 || !buf.subarray(0, 4).equals(ELF_MAGIC)) throw new ModinfoError("not an ELF file");
  const cls = buf[4];
  const data = buf[5];
  if (cls !== 1 && cls !== 2) throw new ModinfoError(`unknown ELF class ${cls}`);
  if (data !== 1 && data !== 2) throw new ModinfoError(`unknown ELF byte order ${data}`);
  const r = new Reader(buf, { wide: cls === 2, little: data === 1 });
  const at = r.l.wide
    ? { shoff: 0x28, shentsize: 0x3a, shnum: 0x3c, shstrndx: 0x3e }
    : { shoff: 0x20, shentsize: 0x2e, shnum: 0x30, shstrndx: 0x32 };
  const shoff = r.word(at.shoff, "e_shoff");
  const shentsize = r.u16(at.shentsize, "e_shentsize");
  let shnum = r.u16(at.shnum, "e_shnum");
  let shstrndx = r.u16(at.shstrndx, "e_shstrndx");
  if (shoff === 0) throw new ModinfoError("ELF file has no section headers");
  if (shentsize < (r.l.wide ? 64 : 40)) throw new ModinfoError(`bad section header size ${shentsize}`);
  // More than 0xff00 sections: the real count and string table index live in section 0.
  if (shnum === 0 || shstrndx === SHN_XINDEX) {
    const first = sectionHeader(r, shoff, shentsize, 0);
    if (shnum === 0) shnum = first.size;
    if (shstrndx === SHN_XINDEX) shstrndx = first.link;
  }
  if (shnum > (buf.length - shoff) / shentsize)
    throw new ModinfoError(`section count ${shnum} overruns the file`);
  if (shstrndx >= shnum) throw new ModinfoError(`section name table index ${shstrndx} out of range`);
  const names = sectionHeader(r, shoff, shentsize, shstrndx);
  const strtab = sectionBytes(buf, names, "section name table");
  for (let i = 0; i < shnum; i++) {
    const sh = sectionHeader(r, shoff, shentsize, i);
    if (sh.name >= strtab.length) continue;
    const end = strtab.indexOf(0, sh.name);
    const name = strtab.toString("latin1", sh.name, end < 0 ? strtab.length : end);
    if (name === wanted) return sectionBytes(buf, sh, wanted);
  }
  return undefined;
}

function sectionBytes(buf: Buffer, sh: Section, what: string): Buffer {
  if (sh.type === SHT_NOBITS) return Buffer.alloc(0);
  if (sh.offset > buf.length || sh.size > buf.length - sh.offset) {
    throw new ModinfoError(`${what} (offset ${sh.offset}, ${sh.size} bytes) overruns the file`);
  }
  return buf.subarray(sh.offset, sh.offset + sh.size);
}

/** Splits a .modinfo section into key=value pairs; strings without `=` are skipped. */
export function parseModinfoSection(section: Buffer): ModInfo {
  const info: ModInfo = { depends: [], entries: [] };
  for (const raw of section.toString("utf8").split("\0")) {
    const eq = raw.indexOf("=");
    if (eq <= 0) continue;
    const key = raw.slice(0, eq);
    const value = raw.slice(eq + 1);
    info.entries.push([key, value]);
    if (key === "name") info.name = value;
    else if (key === "depends") info.depends = value.split(",").filter(Boolean);
    else if (key === "vermagic") info.vermagic = value;
  }
  return info;
}

/** The .modinfo of an (uncompressed) .ko file's bytes. */
export function readModinfo(ko: Buffer): ModInfo {
  const section = findSection(ko, ".modinfo");
  if (!section) throw new ModinfoError("no .modinfo section: not a kernel module");
  return parseModinfoSection(section);
}

/** The module name the kernel derives from a file name: `virtio-rng.ko.xz` -> `virtio_rng`. */
export function moduleNameOfFile(fileName: string): string {
  const base = fileName.slice(fileName.lastIndexOf("/") + 1);
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, "").replace(/-/g, "_");
}
