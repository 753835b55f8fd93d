import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import fc from "fast-check";
import { fetchKernel } from "../kernel/fetch.js";
import type { KernelManifest } from "../kernel/manifest.js";
import { ModinfoError, moduleNameOfFile, parseModinfoSection, readModinfo } from "./modinfo.js";
import { dependencyClosure, loadOrder, ModuleCycleError } from "./order.js";

/** A minimal relocatable ELF with the given sections (plus the null and name-table sections). */
function elf(
  sections: { name: string; data: Buffer }[],
  o: { wide?: boolean; little?: boolean } = {},
): Buffer {
  const wide = o.wide ?? true;
  const little = o.little ?? true;
  const ehsize = wide ? 64 : 52;
  const shentsize = wide ? 64 : 40;
  const all = [
    { name: "", data: Buffer.alloc(0) },
    ...sections,
    { name: ".shstrtab", data: Buffer.alloc(0) },
  ];
  let strtab = Buffer.from([0]);
  const nameOff = all.map((s) => {
    if (!s.name) return 0;
    const off = strtab.length;
    strtab = Buffer.concat([strtab, Buffer.from(`${s.name}\0`)]);
    return off;
  });
  all[all.length - 1]!.data = strtab;
  const offsets: number[] = [];
  let pos = ehsize;
  for (const s of all) {
    offsets.push(pos);
    pos += s.data.length;
  }
  const shoff = pos + ((8 - (pos % 8)) % 8);
  const out = Buffer.alloc(shoff + shentsize * all.length);
  out.write("\x7fELF", 0, "latin1");
  out[4] = wide ? 2 : 1;
  out[5] = little ? 1 : 2;
  out[6] = 1;
  const w16 = (v: number, at: number) => (little ? out.writeUInt16LE(v, at) : out.writeUInt16BE(v, at));
  const w32 = (v: number, at: number) => (little ? out.writeUInt32LE(v, at) : out.writeUInt32BE(v, at));
  const wword = (v: number, at: number) =>
    wide ? (little ? out.writeBigUInt64LE(BigInt(v), at) : out.writeBigUInt64BE(BigInt(v), at)) : w32(v, at);
  w16(1, 16); // ET_REL
  w16(62, 18);
  if (wide) {
    wword(shoff, 0x28);
    w16(ehsize, 0x34);
    w16(shentsize, 0x3a);
    w16(all.length, 0x3c);
    w16(all.length - 1, 0x3e);
  } else {
    w32(shoff, 0x20);
    w16(ehsize, 0x28);
    w16(shentsize, 0x2e);
    w16(all.length, 0x30);
    w16(all.length - 1, 0x32);
  }
  all.forEach((s, i) => {
    s.data.copy(out, offsets[i]!);
    const base = shoff + i * shentsize;
    w32(nameOff[i]!, base);
    w32(i === 0 ? 0 : 1, base + 4); // SHT_PROGBITS
    if (wide) {
      wword(offsets[i]!, base + 24);
      wword(s.data.length, base + 32);
    } else {
      w32(offsets[i]!, base + 16);
      w32(s.data.length, base + 20);
    }
  });
  return out;
}

const modinfo = (...kv: string[]) => Buffer.from(`${kv.join("\0")}\0`);

/**
 * A field as kmod's own `modinfo -F` reads it from a .ko (kmod is in the Makefile's packages):
 * the independent reading our reader is checked against.
 */
function kmodField(file: string, field: string): string[] {
  const out = execFileSync("modinfo", ["-F", field, file], {
    encoding: "utf8",
    env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
  });
  return out.split("\n").filter((l) => l !== "");
}

describe("modinfo of crafted ELF files", () => {
  for (const wide of [true, false]) {
    for (const little of [true, false]) {
      test(`ELF${wide ? 64 : 32} ${little ? "LE" : "BE"}`, () => {
        const ko = elf(
          [
            { name: ".text", data: Buffer.from("code") },
            {
              name: ".modinfo",
              data: modinfo("license=GPL", "depends=a,b", "name=m_x", "alias=x", "alias=y"),
            },
          ],
          { wide, little },
        );
        const info = readModinfo(ko);
        assert.equal(info.name, "m_x");
        assert.deepEqual(info.depends, ["a", "b"]);
        assert.deepEqual(
          info.entries.filter(([k]) => k === "alias").map(([, v]) => v),
          ["x", "y"],
        );
      });
    }
  }

  test("empty depends, a section without a final NUL, strings without '='", () => {
    const info = parseModinfoSection(Buffer.from("depends=\0junk\0name=z"));
    assert.deepEqual(info.depends, []);
    assert.equal(info.name, "z");
  });

  test("not a module: clean errors", () => {
    assert.throws(() => readModinfo(Buffer.from("hello")), ModinfoError);
    assert.throws(() => readModinfo(elf([{ name: ".text", data: Buffer.from("x") }])), /no \.modinfo/);
    const ko = elf([{ name: ".modinfo", data: modinfo("name=a") }]);
    assert.throws(() => readModinfo(ko.subarray(0, ko.length - 10)), ModinfoError);
  });

  test("file names as the kernel spells module names", () => {
    assert.equal(moduleNameOfFile("drivers/char/hw_random/virtio-rng.ko"), "virtio_rng");
    assert.equal(moduleNameOfFile("x-y.ko.zst"), "x_y");
  });

  test("property: random bytes give a ModinfoError or a result, never another exception", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), fc.boolean(), (bytes, withMagic) => {
        const buf = Buffer.from(bytes);
        if (withMagic && buf.length >= 6) {
          Buffer.from([0x7f, 0x45, 0x4c, 0x46]).copy(buf);
          buf[4] = 1 + (buf[4]! % 2);
          buf[5] = 1 + (buf[5]! % 2);
        }
        try {
          readModinfo(buf);
        } catch (err) {
          if (!(err instanceof ModinfoError)) throw err;
        }
      }),
      { numRuns: 2000 },
    );
  });

  test("property: a valid module with random bytes overwritten gives a ModinfoError or a result", () => {
    const base = elf([
      { name: ".text", data: Buffer.alloc(40, 0x90) },
      { name: ".modinfo", data: modinfo("name=m", "depends=a") },
    ]);
    assertCorruptionIsModinfoError(base, fc.nat(base.length - 1), 8, 3000);
  });
});

describe("load order", () => {
  test("dependencies first, ties by name, unknown dependencies ignored", () => {
    const order = loadOrder([
      { name: "virtio_net", depends: ["virtio", "virtio_ring", "net_failover"] },
      { name: "net_failover", depends: ["failover"] },
      { name: "virtio", depends: [] },
      { name: "failover", depends: [] },
      { name: "virtio_ring", depends: ["builtin_thing"] },
    ]).map((m) => m.name);
    assert.deepEqual(order, ["failover", "net_failover", "virtio", "virtio_ring", "virtio_net"]);
  });

  test("a cycle is named", () => {
    assert.throws(
      () =>
        loadOrder([
          { name: "a", depends: ["b"] },
          { name: "b", depends: ["a"] },
        ]),
      (err: Error) => err instanceof ModuleCycleError && /a -> b -> a/.test(err.message),
    );
  });

  test("property: every module comes after all of its dependencies", () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.nat(19), { maxLength: 4 }), { minLength: 1, maxLength: 20 }),
        (deps) => {
          // Acyclic by construction: module i depends only on lower numbers.
          const mods = deps.map((d, i) => ({
            name: `m${i}`,
            depends: d.filter((j) => j < i).map((j) => `m${j}`),
          }));
          const order = loadOrder([...mods].reverse()).map((m) => m.name);
          assert.equal(order.length, mods.length);
          for (const m of mods)
            for (const d of m.depends) assert.ok(order.indexOf(d) < order.indexOf(m.name));
        },
      ),
    );
  });

  test("closure follows depends and reports what is missing", async () => {
    const deps: Record<string, string[]> = { a: ["b"], b: ["c", "zz"], c: [] };
    const r = await dependencyClosure(["a", "nope"], (n) => deps[n]);
    assert.deepEqual(r, { names: ["a", "b", "c"], missing: ["nope", "zz"] });
  });
});

describe("modinfo of Debian's modules", { timeout: 300_000 }, () => {
  let dir = "";
  let manifest: KernelManifest;
  before(async () => {
    ({ dir, manifest } = await fetchKernel({ arch: "amd64" }));
  });

  test("virtio_net's name and dependencies, as depmod would read them", async () => {
    const info = readModinfo(await readFile(join(dir, "modules", "virtio_net.ko")));
    assert.equal(info.name, "virtio_net");
    // Known values for Debian 12's 6.1 kernel.
    assert.deepEqual([...info.depends].sort(), ["net_failover", "virtio", "virtio_ring"]);
    assert.match(info.vermagic ?? "", new RegExp(`^${manifest.version.replace(/\./g, "\\.")} `));
  });

  test("the manifest lists every kept module after its dependencies (as kmod's modinfo reads them)", () => {
    const names = manifest.modules.map((m) => m.name);
    for (const [i, m] of manifest.modules.entries()) {
      const depends = kmodField(join(dir, m.file), "depends")
        .flatMap((l) => l.split(","))
        .filter(Boolean);
      for (const d of depends) {
        const j = names.indexOf(d);
        assert.ok(j >= 0 && j < i, `${m.name} needs ${d} before it`);
      }
    }
    for (const want of ["virtio_mmio", "virtio_pci", "virtio_net", "virtio_input", "vsock", "overlay"]) {
      assert.ok(names.includes(want), want);
    }
  });

  test("every kept module reads as kmod's modinfo reads it: name, depends, vermagic, aliases", async () => {
    assert.ok(manifest.modules.length > 10, "a kernel with modules");
    for (const m of manifest.modules) {
      const file = join(dir, m.file);
      const info = readModinfo(await readFile(file));
      const field = (k: string) => info.entries.filter(([key]) => key === k).map(([, v]) => v);
      assert.deepEqual([info.name], kmodField(file, "name"), `${m.file}: name`);
      assert.deepEqual(
        info.depends,
        kmodField(file, "depends")
          .flatMap((l) => l.split(","))
          .filter(Boolean),
        `${m.file}: depends`,
      );
      assert.deepEqual([info.vermagic], kmodField(file, "vermagic"), `${m.file}: vermagic`);
      assert.deepEqual(field("alias"), kmodField(file, "alias"), `${m.file}: aliases`);
      // And the manifest kept what the module says.
      assert.equal(m.name, info.name);
      assert.deepEqual(m.depends, info.depends);
    }
  });

  test("property: a real module with its headers overwritten gives a ModinfoError or a result", async () => {
    const ko = await readFile(join(dir, "modules", "virtio.ko"));
    const shoff = Number(ko.readBigUInt64LE(0x28));
    // Positions in the ELF header and the section header table, where corruption matters.
    const spot = fc.oneof(fc.nat(63), fc.integer({ min: shoff, max: ko.length - 1 }));
    assertCorruptionIsModinfoError(ko, spot, 6, 1000);
  });
});

/** Overwriting up to `maxEdits` bytes of `base` at `spot`s gives a ModinfoError or a result. */
function assertCorruptionIsModinfoError(
  base: Buffer,
  spot: fc.Arbitrary<number>,
  maxEdits: number,
  numRuns: number,
): void {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(spot, fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: maxEdits }),
      (edits) => {
        const buf = Buffer.from(base);
        for (const [at, v] of edits) buf[at] = v;
        try {
          readModinfo(buf);
        } catch (err) {
          if (!(err instanceof ModinfoError)) throw err;
        }
      },
    ),
    { numRuns },
  );
}
