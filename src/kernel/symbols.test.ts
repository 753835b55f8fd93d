import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { hostExecutable } from "../util/host-path.js";
import { bootKernelSymbols, functionSymbols } from "./symbols.js";

test("function symbols of an unstripped ELF64, as nm lists them; a stripped or missing file names none", {
  skip:
    hostExecutable("gcc") && hostExecutable("nm")
      ? false
      : "gcc and nm are needed (apt-get install gcc binutils)",
}, async () => {
  const work = await mkdtemp(join(tmpdir(), "slimroot-symbols-"));
  try {
    const src = join(work, "k.c");
    await writeFile(src, "int pty_init(void) { return 1; }\nvoid _start(void) { for (;;) pty_init(); }\n");
    const elf = join(work, "vmlinux");
    execFileSync("gcc", ["-O0", "-nostdlib", "-static", "-no-pie", "-o", elf, src]);
    const nm = execFileSync("nm", [elf], { encoding: "utf8" });
    const at = (name: string) => BigInt(`0x${new RegExp(`^([0-9a-f]+) T ${name}$`, "m").exec(nm)![1]}`);
    const syms = await functionSymbols(elf);
    assert.equal(syms.get(at("pty_init")), "pty_init");
    assert.equal(syms.get(at("_start")), "_start");
    // The kernel run boots: an ELF names itself; an Image is named by a vmlinux beside it or
    // in a kernel build directory's object tree (arm64), else by nothing.
    const kdir = join(work, "kernel");
    await mkdir(join(kdir, "build"), { recursive: true });
    await writeFile(join(kdir, "Image"), "not an ELF");
    assert.equal((await bootKernelSymbols(join(kdir, "Image"), false)).size, 0);
    await copyFile(elf, join(kdir, "build", "vmlinux"));
    assert.equal((await bootKernelSymbols(join(kdir, "Image"), false)).get(at("pty_init")), "pty_init");
    assert.equal((await bootKernelSymbols(elf, true)).get(at("pty_init")), "pty_init");
    execFileSync("strip", [elf]);
    assert.equal((await functionSymbols(elf)).size, 0);
    assert.equal((await functionSymbols(join(work, "none"))).size, 0);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
