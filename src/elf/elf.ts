/**
 * Just enough of ELF to find what an object needs at load time: header, program headers,
 * PT_INTERP and the dynamic section's strings. Untrusted input: every read is bounds-checked
 * and anything wrong is an ElfError, never another exception or a long loop.
 */

import { type Arch, archOfElfMachine } from "../arch/arch.js";

export class ElfError extends Error {
  /** True when the data ran out: the same file read in full may parse. */
  readonly truncated: boolean;
  constructor(message: string, truncated = false) {
    super(message);
    this.truncated = truncated;
  }
}

export const ELFCLASS32 = 1;
export const ELFCLASS64 = 2;
export const ELFDATA2LSB = 1;
export const ELFDATA2MSB = 2;

export const ET_EXEC = 2;
export const ET_DYN = 3;

export const EM_386 = 3;
export const EM_MIPS = 8;
export const EM_PPC = 20;
export const EM_PPC64 = 21;
export const EM_S390 = 22;
export const EM_ARM = 40;
export const EM_X86_64 = 62;
export const EM_AARCH64 = 183;
export const EM_RISCV = 243;
export const EM_LOONGARCH = 258;

export const PT_LOAD = 1;
export const PT_DYNAMIC = 2;
export const PT_INTERP = 3;

export const DT_NULL = 0;
export const DT_NEEDED = 1;
export const DT_STRTAB = 5;
export const DT_STRSZ = 10;
export const DT_SONAME = 14;
export const DT_RPATH = 15;
export const DT_RUNPATH = 29;
export const DT_FLAGS = 30;
export const DT_FLAGS_1 = 0x6ffffffb;

export const DF_1_NODEFLIB = 0x800;

const PN_XNUM = 0xffff;
/** Longer names are not paths anyone can open (PATH_MAX); the cap also bounds the work. */
const MAX_STRING = 4096;

export interface ProgramHeader {
  type: number;
  flags: number;
  offset: number;
  filesz: number;
  vaddr: bigint;
  memsz: bigint;
}

export interface DynamicInfo {
  /** DT_NEEDED names, in order. */
  needed: string[];
  soname?: string;
  /** Raw DT_RPATH / DT_RUNPATH strings (the last entry wins, as in ld.so). */
  rpath?: string;
  runpath?: string;
  /** DT_FLAGS and DT_FLAGS_1, 0 when absent. */
  flags: number;
  flags1: number;
}

export interface ElfFile {
  elfClass: 1 | 2;
  /** ELFDATA2LSB or ELFDATA2MSB. */
  data: 1 | 2;
  osabi: number;
  type: number;
  machine: number;
  programHeaders: ProgramHeader[];
  /** PT_INTERP: the program interpreter's path. */
  interpreter?: string;
  /** Absent for objects without PT_DYNAMIC (static executables). */
  dynamic?: DynamicInfo;
}

const MAGIC = [0x7f, 0x45, 0x4c, 0x46];

export function isElf(buf: Uint8Array): boolean {
  return buf.length >= 4 && MAGIC.every((b, i) => buf[i] === b);
}

/** Bounds-checked reads in one byte order (also for src/elf/sections.ts). */
export class Reader {
  constructor(
    readonly buf: Buffer,
    readonly le: boolean,
    readonly is64: boolean,
  ) {}

  private need(off: number, len: number): void {
    if (!Number.isSafeInteger(off) || off < 0 || off + len > this.buf.length)
      throw new ElfError(`offset ${off} is past the end of the file`, true);
  }
  u8(off: number): number {
    this.need(off, 1);
    return this.buf[off]!;
  }
  u16(off: number): number {
    this.need(off, 2);
    return this.le ? this.buf.readUInt16LE(off) : this.buf.readUInt16BE(off);
  }
  u32(off: number): number {
    this.need(off, 4);
    return this.le ? this.buf.readUInt32LE(off) : this.buf.readUInt32BE(off);
  }
  u64(off: number): bigint {
    this.need(off, 8);
    return this.le ? this.buf.readBigUInt64LE(off) : this.buf.readBigUInt64BE(off);
  }
  /** A word: 4 bytes in ELF32, 8 in ELF64. */
  word(off: number): bigint {
    return this.is64 ? this.u64(off) : BigInt(this.u32(off));
  }
  /** A word used as a file offset or size; huge values become unsafe numbers the checks refuse. */
  size(off: number): number {
    return Number(this.word(off));
  }
  /** A NUL-terminated string starting at `off` and ending before `end`. */
  cstring(off: number, end = this.buf.length): string {
    this.need(off, 0);
    const limit = Math.min(end, this.buf.length, off + MAX_STRING);
    const nul = this.buf.indexOf(0, off);
    if (nul < 0 || nul >= limit) {
      if (limit === this.buf.length && limit < off + MAX_STRING)
        throw new ElfError(`unterminated string at ${off}`, true);
      throw new ElfError(`unterminated or overlong string at ${off}`);
    }
    return this.buf.toString("utf8", off, nul);
  }
}

/** An ELF header's identification, type and machine: what its first 20 bytes say. */
export interface ElfIdent {
  elfClass: number;
  data: number;
  type: number;
  machine: number;
}

/**
 * The identification of `head` (an ELF file's first bytes, at least 20), or undefined when it
 * is not an ELF header of a known class and byte order. Enough to tell a file's architecture
 * without reading the rest (a kernel's vmlinux, a module).
 */
export function elfIdent(head: Uint8Array): ElfIdent | undefined {
  if (head.length < 20 || !isElf(head)) return undefined;
  const elfClass = head[4]!;
  const data = head[5]!;
  if (elfClass !== ELFCLASS32 && elfClass !== ELFCLASS64) return undefined;
  if (data !== ELFDATA2LSB && data !== ELFDATA2MSB) return undefined;
  const buf = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  const le = data === ELFDATA2LSB;
  return {
    elfClass,
    data,
    type: le ? buf.readUInt16LE(16) : buf.readUInt16BE(16),
    machine: le ? buf.readUInt16LE(18) : buf.readUInt16BE(18),
  };
}

/** Parses the parts of an ELF object the loader looks at; throws ElfError on anything else. */
export function parseElf(input: Uint8Array): ElfFile {
  const buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (!MAGIC.every((b, i) => i >= buf.length || buf[i] === b)) throw new ElfError("not an ELF file");
  if (buf.length < 16) throw new ElfError("file too short for an ELF header", true);
  const elfClass = buf[4];
  const data = buf[5];
  if (elfClass !== ELFCLASS32 && elfClass !== ELFCLASS64) throw new ElfError(`bad ELF class ${elfClass}`);
  if (data !== ELFDATA2LSB && data !== ELFDATA2MSB) throw new ElfError(`bad ELF data encoding ${data}`);
  const is64 = elfClass === ELFCLASS64;
  const r = new Reader(buf, data === ELFDATA2LSB, is64);
  const osabi = buf[7]!;

  // e_type, e_machine, then (after e_version, e_entry) e_phoff ... e_shstrndx.
  const type = r.u16(16);
  const machine = r.u16(18);
  const phoff = r.size(is64 ? 32 : 28);
  const shoff = r.size(is64 ? 40 : 32);
  const phentsize = r.u16(is64 ? 54 : 42);
  let phnum = r.u16(is64 ? 56 : 44);
  if (phnum === PN_XNUM) {
    // The real count is in sh_info of section header 0.
    phnum = r.u32(shoff + (is64 ? 44 : 28));
  }

  const programHeaders: ProgramHeader[] = [];
  if (phnum > 0) {
    const minEnt = is64 ? 56 : 32;
    if (phentsize < minEnt) throw new ElfError(`program header size ${phentsize} is too small`);
    if (!Number.isSafeInteger(phoff) || phoff < 0 || phoff + phnum * phentsize > buf.length)
      throw new ElfError("program headers are past the end of the file", true);
    for (let i = 0; i < phnum; i++) {
      const p = phoff + i * phentsize;
      programHeaders.push(
        is64
          ? {
              type: r.u32(p),
              flags: r.u32(p + 4),
              offset: r.size(p + 8),
              vaddr: r.u64(p + 16),
              filesz: r.size(p + 32),
              memsz: r.u64(p + 40),
            }
          : {
              type: r.u32(p),
              offset: r.size(p + 4),
              vaddr: BigInt(r.u32(p + 8)),
              filesz: r.size(p + 16),
              memsz: BigInt(r.u32(p + 20)),
              flags: r.u32(p + 24),
            },
      );
    }
  }

  const elf: ElfFile = {
    elfClass,
    data,
    osabi,
    type,
    machine,
    programHeaders,
  };

  const interp = programHeaders.find((p) => p.type === PT_INTERP);
  if (interp) {
    const end = interp.offset + interp.filesz;
    if (!Number.isSafeInteger(end) || end > buf.length)
      throw new ElfError("PT_INTERP is past the end of the file", true);
    // The string includes its NUL; tolerate a missing one as the segment's end.
    const nul = buf.indexOf(0, interp.offset);
    elf.interpreter = buf.toString("utf8", interp.offset, nul >= 0 && nul < end ? nul : end);
  }

  const dyn = programHeaders.find((p) => p.type === PT_DYNAMIC);
  if (dyn) elf.dynamic = parseDynamic(r, dyn, programHeaders);
  return elf;
}

function parseDynamic(r: Reader, dyn: ProgramHeader, phdrs: ProgramHeader[]): DynamicInfo {
  const entSize = r.is64 ? 16 : 8;
  const end = dyn.offset + dyn.filesz;
  if (!Number.isSafeInteger(end) || end > r.buf.length)
    throw new ElfError("PT_DYNAMIC is past the end of the file", true);

  const neededOffsets: bigint[] = [];
  let strtab: bigint | undefined;
  let strsz: bigint | undefined;
  let soname: bigint | undefined;
  let rpath: bigint | undefined;
  let runpath: bigint | undefined;
  let flags = 0n;
  let flags1 = 0n;
  for (let p = dyn.offset; p + entSize <= end; p += entSize) {
    const tag = r.word(p);
    const val = r.word(p + entSize / 2);
    if (tag === BigInt(DT_NULL)) break;
    switch (Number(tag)) {
      case DT_NEEDED:
        neededOffsets.push(val);
        break;
      case DT_STRTAB:
        strtab = val;
        break;
      case DT_STRSZ:
        strsz = val;
        break;
      case DT_SONAME:
        soname = val;
        break;
      case DT_RPATH:
        rpath = val;
        break;
      case DT_RUNPATH:
        runpath = val;
        break;
      case DT_FLAGS:
        flags = val;
        break;
      case DT_FLAGS_1:
        flags1 = val;
        break;
    }
  }

  const info: DynamicInfo = {
    needed: [],
    flags: Number(flags & 0xffffffffn),
    flags1: Number(flags1 & 0xffffffffn),
  };
  const wantsStrings =
    neededOffsets.length > 0 || soname !== undefined || rpath !== undefined || runpath !== undefined;
  if (!wantsStrings) return info;
  if (strtab === undefined) throw new ElfError("dynamic section has names but no DT_STRTAB");
  const base = fileOffsetOf(strtab, phdrs);
  const tableEnd = strsz === undefined ? r.buf.length : Math.min(r.buf.length, base + Number(strsz));
  const str = (off: bigint) => {
    if (strsz !== undefined && off >= strsz) throw new ElfError(`string offset ${off} is outside DT_STRSZ`);
    return r.cstring(base + Number(off), tableEnd);
  };
  info.needed = neededOffsets.map(str);
  if (soname !== undefined) info.soname = str(soname);
  if (rpath !== undefined) info.rpath = str(rpath);
  if (runpath !== undefined) info.runpath = str(runpath);
  return info;
}

/** Maps a virtual address to its file offset through the PT_LOAD segment holding it. */
function fileOffsetOf(addr: bigint, phdrs: ProgramHeader[]): number {
  for (const p of phdrs) {
    if (p.type !== PT_LOAD) continue;
    if (addr >= p.vaddr && addr < p.vaddr + BigInt(p.filesz)) return p.offset + Number(addr - p.vaddr);
  }
  throw new ElfError(`address 0x${addr.toString(16)} is in no PT_LOAD segment`);
}

const MACHINE_NAMES: Record<number, string> = {
  [EM_386]: "i386",
  [EM_MIPS]: "mips",
  [EM_PPC]: "ppc",
  [EM_PPC64]: "ppc64",
  [EM_S390]: "s390x",
  [EM_ARM]: "arm",
  [EM_X86_64]: "x86_64",
  [EM_AARCH64]: "aarch64",
  [EM_RISCV]: "riscv",
  [EM_LOONGARCH]: "loongarch",
};

/** A short name for an e_machine value, for messages. */
export function elfMachineName(machine: number): string {
  return MACHINE_NAMES[machine] ?? `machine ${machine}`;
}

export interface ElfTarget {
  machine: number;
  elfClass: 1 | 2;
}

const TARGETS: Record<string, ElfTarget> = {
  amd64: { machine: EM_X86_64, elfClass: ELFCLASS64 },
  arm64: { machine: EM_AARCH64, elfClass: ELFCLASS64 },
  "386": { machine: EM_386, elfClass: ELFCLASS32 },
  arm: { machine: EM_ARM, elfClass: ELFCLASS32 },
  riscv64: { machine: EM_RISCV, elfClass: ELFCLASS64 },
  ppc64le: { machine: EM_PPC64, elfClass: ELFCLASS64 },
  s390x: { machine: EM_S390, elfClass: ELFCLASS64 },
  loong64: { machine: EM_LOONGARCH, elfClass: ELFCLASS64 },
};

/** The ELF machine and class of an OCI/Go architecture name ("amd64", "arm64", ...). */
export function elfTargetForArch(arch: string): ElfTarget | undefined {
  return TARGETS[arch];
}

/** The architecture of an ELF file from its e_machine, or undefined for other machines. */
export function elfArch(head: Buffer): Arch | undefined {
  const ident = elfIdent(head);
  return ident && archOfElfMachine(ident.machine);
}
