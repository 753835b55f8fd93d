import { readSync } from "node:fs";
import { ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFDATA2MSB, ElfError, isElf, Reader } from "./elf.js";

const SHN_XINDEX = 0xffff;
const SHT_NOBITS = 8;

interface Section {
  name: number;
  type: number;
  addr: bigint;
  offset: number;
  size: number;
  link: number;
}

/** A section of an ELF file, with its name. */
export interface NamedSection extends Omit<Section, "name"> {
  name: string;
}

function sectionHeader(r: Reader, shoff: number, shentsize: number, i: number): Section {
  const base = shoff + i * shentsize;
  return r.is64
    ? {
        name: r.u32(base),
        type: r.u32(base + 4),
        addr: r.u64(base + 16),
        offset: r.size(base + 24),
        size: r.size(base + 32),
        link: r.u32(base + 40),
      }
    : {
        name: r.u32(base),
        type: r.u32(base + 4),
        addr: BigInt(r.u32(base + 12)),
        offset: r.u32(base + 16),
        size: r.u32(base + 20),
        link: r.u32(base + 24),
      };
}

/** Reads `length` bytes at `offset` of the ELF file (fewer at its end). */
type ReadAt = (offset: number, length: number) => Buffer;

/**
 * The section table of an ELF file of `fileSize` bytes, read through `at`: the header, the
 * table and the name table only, so a file on disk is read no further than that (a kernel's
 * vmlinux is tens of MB). Accepts ELF32/ELF64 of either byte order; anything malformed is an
 * ElfError.
 */
function sectionTable(
  at: ReadAt,
  fileSize: number,
): { sections: NamedSection[]; le: boolean; is64: boolean } {
  const head = at(0, 64);
  if (head.length < 16 || !isElf(head)) throw new ElfError("not an ELF file");
  const cls = head[4];
  const data = head[5];
  if (cls !== ELFCLASS32 && cls !== ELFCLASS64) throw new ElfError(`unknown ELF class ${cls}`);
  if (data !== ELFDATA2LSB && data !== ELFDATA2MSB) throw new ElfError(`unknown ELF byte order ${data}`);
  const le = data === ELFDATA2LSB;
  const is64 = cls === ELFCLASS64;
  const r = new Reader(head, le, is64);
  const fields = is64
    ? { shoff: 0x28, shentsize: 0x3a, shnum: 0x3c, shstrndx: 0x3e }
    : { shoff: 0x20, shentsize: 0x2e, shnum: 0x30, shstrndx: 0x32 };
  const shoff = r.size(fields.shoff);
  const shentsize = r.u16(fields.shentsize);
  let shnum = r.u16(fields.shnum);
  let shstrndx = r.u16(fields.shstrndx);
  if (shoff === 0) throw new ElfError("ELF file has no section headers");
  if (!Number.isSafeInteger(shoff)) throw new ElfError(`e_shoff ${shoff} is out of range`);
  if (shentsize < (is64 ? 64 : 40)) throw new ElfError(`bad section header size ${shentsize}`);
  const entries = (first: number, count: number) => {
    if (shoff > fileSize) throw new ElfError(`offset ${shoff} is past the end of the file`, true);
    return new Reader(at(shoff + first * shentsize, count * shentsize), le, is64);
  };
  // More than 0xff00 sections: the real count and string table index live in section 0.
  if (shnum === 0 || shstrndx === SHN_XINDEX) {
    const first = sectionHeader(entries(0, 1), 0, shentsize, 0);
    if (shnum === 0) shnum = first.size;
    if (shstrndx === SHN_XINDEX) shstrndx = first.link;
  }
  if (shnum > (fileSize - shoff) / shentsize) throw new ElfError(`section count ${shnum} overruns the file`);
  if (shstrndx >= shnum) throw new ElfError(`section name table index ${shstrndx} out of range`);
  const table = entries(0, shnum);
  const names = sectionHeader(table, 0, shentsize, shstrndx);
  const strtab = sectionBytes(at, fileSize, names, "section name table");
  const out: NamedSection[] = [];
  for (let i = 0; i < shnum; i++) {
    const sh = sectionHeader(table, 0, shentsize, i);
    if (sh.name >= strtab.length) continue;
    const end = strtab.indexOf(0, sh.name);
    out.push({ ...sh, name: strtab.toString("latin1", sh.name, end < 0 ? strtab.length : end) });
  }
  return { sections: out, le, is64 };
}

/** A section's bytes through `at` (none for a NOBITS section); one overrunning the file is an ElfError. */
function sectionBytes(at: ReadAt, fileSize: number, sh: Omit<Section, "name">, what: string): Buffer {
  if (sh.type === SHT_NOBITS) return Buffer.alloc(0);
  if (!(sh.offset <= fileSize && sh.size <= fileSize - sh.offset)) {
    throw new ElfError(`${what} (offset ${sh.offset}, ${sh.size} bytes) overruns the file`);
  }
  return at(sh.offset, sh.size);
}

const bufferAt =
  (buf: Buffer): ReadAt =>
  (offset, length) =>
    buf.subarray(offset, offset + length);

/**
 * The bytes of the section called `wanted` (a module's `.modinfo`), or undefined if the file
 * has none. Accepts ELF32/ELF64 of either byte order; anything malformed is an ElfError.
 */
export function findSection(buf: Buffer, wanted: string): Buffer | undefined {
  const sh = sectionTable(bufferAt(buf), buf.length).sections.find((s) => s.name === wanted);
  return sh && sectionBytes(bufferAt(buf), buf.length, sh, wanted);
}

/**
 * An ELF file open as `fd` (of `size` bytes), read only where asked: its section table, and
 * each section's bytes on demand. Malformed: an ElfError.
 */
export class ElfFile {
  readonly sections: readonly NamedSection[];
  private readonly at: ReadAt;
  /** Little-endian; ELF64. */
  readonly le: boolean;
  readonly is64: boolean;

  constructor(
    fd: number,
    readonly size: number,
  ) {
    this.at = (offset, length) => {
      const buf = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
      let done = 0;
      while (done < buf.length) {
        const n = readSync(fd, buf, done, buf.length - done, offset + done);
        if (n === 0) throw new ElfError(`offset ${offset + done} is past the end of the file`, true);
        done += n;
      }
      return buf;
    };
    ({ sections: this.sections, le: this.le, is64: this.is64 } = sectionTable(this.at, size));
  }

  /** The bytes of the section called `name`, or undefined if there is none. */
  section(name: string): Buffer | undefined {
    const sh = this.sections.find((s) => s.name === name);
    return sh && sectionBytes(this.at, this.size, sh, name);
  }

  /**
   * The values of the symbols in .symtab called one of `names` (the first of each). Searched
   * with indexOf, not entry by entry: the name's offset in the string table, then that offset
   * as an entry's st_name (a vmlinux has some 35,000 symbols; a loop over them took 20-200 ms
   * on a loaded host).
   */
  symbols(names: readonly string[]): Map<string, bigint> {
    const out = new Map<string, bigint>();
    const table = this.symbolTable();
    if (!table) return out;
    const { syms, strtab } = table;
    const r = new Reader(syms, this.le, this.is64);
    const entry = this.is64 ? 24 : 16;
    for (const n of names) {
      const name = Buffer.from(`\0${n}\0`, "latin1");
      for (let s = strtab.indexOf(name); s >= 0 && !out.has(n); s = strtab.indexOf(name, s + 1)) {
        const key = Buffer.alloc(4);
        if (this.le) key.writeUInt32LE(s + 1);
        else key.writeUInt32BE(s + 1);
        for (let at = syms.indexOf(key); at >= 0; at = syms.indexOf(key, at + 1)) {
          if (at % entry !== 0 || at + entry > syms.length) continue;
          out.set(n, this.is64 ? r.u64(at + 8) : BigInt(r.u32(at + 4)));
          break;
        }
      }
    }
    return out;
  }

  /** The bytes of .symtab and of the string table it names, or undefined for a stripped file. */
  symbolTable(): { syms: Buffer; strtab: Buffer } | undefined {
    const symtab = this.sections.find((s) => s.name === ".symtab");
    const strSection = symtab && this.sections[symtab.link];
    if (!symtab || !strSection) return undefined;
    return {
      syms: sectionBytes(this.at, this.size, symtab, ".symtab"),
      strtab: sectionBytes(this.at, this.size, strSection, ".strtab"),
    };
  }

  /** `length` bytes at `offset` of the file. */
  read(offset: number, length: number): Buffer {
    return this.at(offset, length);
  }

  /** The file offset of virtual address `addr`: in the section (with bytes in the file) that holds it. */
  offsetOf(addr: bigint): { offset: number; end: number } | undefined {
    const sh = this.sections.find(
      (s) => s.type !== SHT_NOBITS && s.addr !== 0n && addr >= s.addr && addr < s.addr + BigInt(s.size),
    );
    if (!sh || !(sh.offset <= this.size && sh.size <= this.size - sh.offset)) return undefined;
    return { offset: sh.offset + Number(addr - sh.addr), end: sh.offset + sh.size };
  }
}
