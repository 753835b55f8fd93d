/**
 * Names for kernel addresses from an unstripped vmlinux's symbol table: a kernel built without
 * kallsyms (slimroot's own) prints initcalls as bare addresses (`run --timeline`).
 */
import { open } from "node:fs/promises";
import { dirname, join } from "node:path";
import { ElfFile } from "../elf/sections.js";
import { BUILD_DIR } from "./build.js";

const SYM64 = 24;
const STT_FUNC = 2;

/**
 * Every function symbol of a little-endian ELF64 vmlinux's .symtab, by address. An unreadable
 * or stripped file gives none. Only the section table, .symtab and .strtab are read (ElfFile),
 * not the whole kernel.
 */
export async function functionSymbols(vmlinux: string): Promise<Map<bigint, string>> {
  const out = new Map<bigint, string>();
  let table: { syms: Buffer; strtab: Buffer } | undefined;
  try {
    const fh = await open(vmlinux, "r");
    try {
      const elf = new ElfFile(fh.fd, (await fh.stat()).size);
      if (!elf.is64 || !elf.le) return out; // ELF64 little-endian only (amd64, arm64)
      table = elf.symbolTable();
    } finally {
      await fh.close();
    }
  } catch {
    return out;
  }
  if (!table) return out;
  const { syms: symtab, strtab } = table;
  for (let off = 0; off + SYM64 <= symtab.length; off += SYM64) {
    if ((symtab[off + 4]! & 0xf) !== STT_FUNC) continue;
    const addr = symtab.readBigUInt64LE(off + 8);
    const start = symtab.readUInt32LE(off);
    const end = strtab.indexOf(0, start);
    if (!out.has(addr) && start < strtab.length && end > start)
      out.set(addr, strtab.toString("latin1", start, end));
  }
  return out;
}

/**
 * The function names of the kernel `run` boots: an ELF kernel's own, else those of the vmlinux
 * it was made from when that is at hand: beside it (amd64's kernel directory), or in the kept
 * object tree of a `kernel build` directory (arm64's Image has no vmlinux beside it).
 */
export async function bootKernelSymbols(kernel: string, elf: boolean): Promise<Map<bigint, string>> {
  const dir = dirname(kernel);
  const candidates = elf ? [kernel] : [join(dir, "vmlinux"), join(dir, BUILD_DIR, "vmlinux")];
  for (const file of candidates) {
    const names = await functionSymbols(file);
    if (names.size > 0) return names;
  }
  return new Map();
}
