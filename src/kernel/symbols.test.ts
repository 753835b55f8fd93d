import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { hostExecutable } from "../util/host-path.js";
import { functionSymbols } from "./symbols.js";

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
    execFileSync("strip", [elf]);
    assert.equal((await functionSymbols(elf)).size, 0);
    assert.equal((await functionSymbols(join(work, "none"))).size, 0);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});
