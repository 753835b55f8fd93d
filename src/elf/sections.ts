import { ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFDATA2MSB, ElfError, isElf, Reader } from "./elf.js";

const SHN_XINDEX = 0xffff;
const SHT_NOBITS = 8;

interface Section {
  name: number;
  type: number;
  offset: number;
  size: number;
  link: number;
}

function sectionHeader(r: Reader, shoff: number, shentsize: number, i: number): Section {
  const base = shoff + i * shentsize;
  return r.is64
    ? {
        name: r.u32(base),
        type: r.u32(base + 4),
        offset: r.size(base + 24),
        size: r.size(base + 32),
        link: r.u32(base + 40),
      }
    : {
        name: r.u32(base),
        type: r.u32(base + 4),
        offset: r.u32(base + 16),
        size: r.u32(base + 20),
        link: r.u32(base + 24),
      };
}

/**
 * The bytes of the section called `wanted` (a module's `.modinfo`), or undefined if the file
 * has none. Accepts ELF32/ELF64 of either byte order; anything malformed is an ElfError.
 */
export function findSection(buf: Buffer, wanted: string): Buffer | undefined {
  if (buf.length < 16 || !isElf(buf)) throw new ElfError("not an ELF file");
  const cls = buf[4];
  const data = buf[5];
  if (cls !== ELFCLASS32 && cls !== ELFCLASS64) throw new ElfError(`unknown ELF class ${cls}`);
  if (data !== ELFDATA2LSB && data !== ELFDATA2MSB) throw new ElfError(`unknown ELF byte order ${data}`);
  const r = new Reader(buf, data === ELFDATA2LSB, cls === ELFCLASS64);
  const at = r.is64
    ? { shoff: 0x28, shentsize: 0x3a, shnum: 0x3c, shstrndx: 0x3e }
    : { shoff: 0x20, shentsize: 0x2e, shnum: 0x30, shstrndx: 0x32 };
  const shoff = r.size(at.shoff);
  const shentsize = r.u16(at.shentsize);
  let shnum = r.u16(at.shnum);
  let shstrndx = r.u16(at.shstrndx);
  if (shoff === 0) throw new ElfError("ELF file has no section headers");
  if (!Number.isSafeInteger(shoff)) throw new ElfError(`e_shoff ${shoff} is out of range`);
  if (shentsize < (r.is64 ? 64 : 40)) throw new ElfError(`bad section header size ${shentsize}`);
  // More than 0xff00 sections: the real count and string table index live in section 0.
  if (shnum === 0 || shstrndx === SHN_XINDEX) {
    const first = sectionHeader(r, shoff, shentsize, 0);
    if (shnum === 0) shnum = first.size;
    if (shstrndx === SHN_XINDEX) shstrndx = first.link;
  }
  if (shnum > (buf.length - shoff) / shentsize)
    throw new ElfError(`section count ${shnum} overruns the file`);
  if (shstrndx >= shnum) throw new ElfError(`section name table index ${shstrndx} out of range`);
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
  if (!(sh.offset <= buf.length && sh.size <= buf.length - sh.offset)) {
    throw new ElfError(`${what} (offset ${sh.offset}, ${sh.size} bytes) overruns the file`);
  }
  return buf.subarray(sh.offset, sh.offset + sh.size);
}
