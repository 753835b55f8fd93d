/**
 * Names for kernel addresses from an unstripped vmlinux's symbol table: a kernel built without
 * kallsyms (slimroot's own) prints initcalls as bare addresses (`run --timeline`).
 */
import { readFile } from "node:fs/promises";
import { findSection } from "../elf/sections.js";

const SYM64 = 24;
const STT_FUNC = 2;

/**
 * Every function symbol of a little-endian ELF64 vmlinux's .symtab, by address. An unreadable
 * or stripped file gives none.
 */
export async function functionSymbols(vmlinux: string): Promise<Map<bigint, string>> {
  const out = new Map<bigint, string>();
  let symtab: Buffer | undefined;
  let strtab: Buffer | undefined;
  try {
    const elf = await readFile(vmlinux);
    if (elf[4] !== 2 || elf[5] !== 1) return out; // ELF64 little-endian only (amd64, arm64)
    symtab = findSection(elf, ".symtab");
    strtab = findSection(elf, ".strtab");
  } catch {
    return out;
  }
  if (!symtab || !strtab) return out;
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
