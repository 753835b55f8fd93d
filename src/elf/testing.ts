/**
 * Test support: writes minimal ELF objects (header, PT_INTERP, one PT_LOAD, PT_DYNAMIC with
 * names) for any class, byte order and machine, for parsing and search-order tests that
 * need objects no local compiler makes. They describe dependencies; they do not run.
 */
import type { Closure } from "./closure.js";
import {
  DT_FLAGS_1,
  DT_NEEDED,
  DT_RPATH,
  DT_RUNPATH,
  DT_SONAME,
  DT_STRSZ,
  DT_STRTAB,
  EM_X86_64,
  ET_DYN,
  PT_DYNAMIC,
  PT_INTERP,
  PT_LOAD,
} from "./elf.js";

export interface ElfSpec {
  elfClass?: 1 | 2;
  /** 1 little endian, 2 big endian. */
  data?: 1 | 2;
  machine?: number;
  type?: number;
  interpreter?: string;
  needed?: string[];
  soname?: string;
  rpath?: string;
  runpath?: string;
  flags1?: number;
  /** No PT_DYNAMIC at all, like a static executable. */
  static?: boolean;
  /** Zero bytes before the string table, to put the names far into the file. */
  pad?: number;
}

const BASE = 0x400000n;

export function buildElf(spec: ElfSpec = {}): Buffer {
  const is64 = (spec.elfClass ?? 2) === 2;
  const le = (spec.data ?? 1) === 1;
  const ehsize = is64 ? 64 : 52;
  const phentsize = is64 ? 56 : 32;

  // String table: offset 0 is the empty string.
  const strings: Buffer[] = [Buffer.from([0])];
  let strLen = 1;
  const str = (s: string) => {
    const off = strLen;
    const b = Buffer.concat([Buffer.from(s, "utf8"), Buffer.from([0])]);
    strings.push(b);
    strLen += b.length;
    return off;
  };
  const dyn: [number, bigint][] = [];
  for (const n of spec.needed ?? []) dyn.push([DT_NEEDED, BigInt(str(n))]);
  if (spec.soname !== undefined) dyn.push([DT_SONAME, BigInt(str(spec.soname))]);
  if (spec.rpath !== undefined) dyn.push([DT_RPATH, BigInt(str(spec.rpath))]);
  if (spec.runpath !== undefined) dyn.push([DT_RUNPATH, BigInt(str(spec.runpath))]);
  if (spec.flags1 !== undefined) dyn.push([DT_FLAGS_1, BigInt(spec.flags1)]);
  const strtab = Buffer.concat(strings);

  const phnum = (spec.interpreter !== undefined ? 1 : 0) + 1 + (spec.static ? 0 : 1);
  const interpOff = ehsize + phnum * phentsize;
  const interp = spec.interpreter !== undefined ? Buffer.from(`${spec.interpreter}\0`) : Buffer.alloc(0);
  const strOff = interpOff + interp.length + (spec.pad ?? 0);
  const dynOff = Math.ceil((strOff + strtab.length) / 8) * 8;
  const entSize = is64 ? 16 : 8;
  dyn.push([DT_STRTAB, BASE + BigInt(strOff)], [DT_STRSZ, BigInt(strtab.length)], [0, 0n]);
  const total = dynOff + (spec.static ? 0 : dyn.length * entSize);
  const buf = Buffer.alloc(total);

  const u16 = (off: number, v: number) => (le ? buf.writeUInt16LE(v, off) : buf.writeUInt16BE(v, off));
  const u32 = (off: number, v: number) => (le ? buf.writeUInt32LE(v, off) : buf.writeUInt32BE(v, off));
  const word = (off: number, v: bigint) => {
    if (is64) {
      if (le) buf.writeBigUInt64LE(v, off);
      else buf.writeBigUInt64BE(v, off);
    } else u32(off, Number(v));
  };

  buf.set([0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, le ? 1 : 2, 1], 0);
  u16(16, spec.type ?? ET_DYN);
  u16(18, spec.machine ?? EM_X86_64);
  u32(20, 1);
  word(is64 ? 32 : 28, BigInt(ehsize)); // e_phoff
  u16(is64 ? 52 : 40, ehsize);
  u16(is64 ? 54 : 42, phentsize);
  u16(is64 ? 56 : 44, phnum);

  let ph = ehsize;
  const phdr = (type: number, offset: number, size: number) => {
    u32(ph, type);
    if (is64) {
      u32(ph + 4, 4); // PF_R
      word(ph + 8, BigInt(offset));
      word(ph + 16, BASE + BigInt(offset));
      word(ph + 24, BASE + BigInt(offset));
      word(ph + 32, BigInt(size));
      word(ph + 40, BigInt(size));
      word(ph + 48, 1n);
    } else {
      word(ph + 4, BigInt(offset));
      word(ph + 8, BASE + BigInt(offset));
      word(ph + 12, BASE + BigInt(offset));
      word(ph + 16, BigInt(size));
      word(ph + 20, BigInt(size));
      u32(ph + 24, 4);
      word(ph + 28, 1n);
    }
    ph += phentsize;
  };
  if (spec.interpreter !== undefined) phdr(PT_INTERP, interpOff, interp.length);
  phdr(PT_LOAD, 0, total);
  if (!spec.static) phdr(PT_DYNAMIC, dynOff, dyn.length * entSize);

  interp.copy(buf, interpOff);
  strtab.copy(buf, strOff);
  if (!spec.static) {
    dyn.forEach(([tag, val], i) => {
      word(dynOff + i * entSize, BigInt(tag));
      word(dynOff + i * entSize + entSize / 2, val);
    });
  }
  return buf;
}

/** A new-format, little-endian ld.so.cache ("glibc-ld.so.cache1.1") listing `entries` in order. */
export function buildLdCache(
  entries: { name: string; path: string; flags?: number; hwcap?: bigint }[],
): Buffer {
  const header = 48;
  const entrySize = 24;
  const strBase = header + entries.length * entrySize;
  const strings: Buffer[] = [];
  let strLen = 0;
  const str = (s: string) => {
    const off = strBase + strLen;
    const b = Buffer.from(`${s}\0`);
    strings.push(b);
    strLen += b.length;
    return off;
  };
  const table = Buffer.alloc(entries.length * entrySize);
  entries.forEach((e, i) => {
    const at = i * entrySize;
    table.writeInt32LE(e.flags ?? 0x0303, at);
    table.writeUInt32LE(str(e.name), at + 4);
    table.writeUInt32LE(str(e.path), at + 8);
    table.writeBigUInt64LE(e.hwcap ?? 0n, at + 16);
  });
  const head = Buffer.alloc(header);
  head.write("glibc-ld.so.cache1.1", 0, "latin1");
  head.writeUInt32LE(entries.length, 20);
  head.writeUInt32LE(strLen, 24);
  head[28] = 2;
  return Buffer.concat([head, table, ...strings]);
}

/** Which file of a closure satisfied a name: the entry whose reason ends with it. */
export function foundAs(c: Closure, name: string): string[] {
  return [...c.files].filter(([, why]) => why.endsWith(`(${name})`)).map(([p]) => p);
}
