/**
 * What `run --dry-run` plans for every launcher x image kind x kernel, pinned: test/fixtures/
 * plans.json holds each plan (or its refusal) as planBoot made it when the snapshot was taken, so
 * a restructuring that changes a plan fails here. A change meant to change plans rewrites it:
 * SLIMROOT_UPDATE_SNAPSHOTS=1 node --import tsx --test test/plan-snapshot.test.ts, then
 * npx biome format --write test/fixtures/plans.json
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { DiskFormat } from "../src/disk/formats.js";
import { parseKernelConfig } from "../src/kernel/config.js";
import { kernelRule } from "../src/vm/memory.js";
import { type BootFacts, type BootOptions, describePlan, planBoot, VMMS } from "../src/vm/plan.js";
import { repoRoot } from "./support/kernel.js";

const SNAPSHOT = join(repoRoot, "test", "fixtures", "plans.json");

/** Debian's cloud kernel's config, as far as a plan reads it, and slimroot's (command-line devices, no ACPI). */
const DEBIAN = [
  "CONFIG_BLK_DEV_INITRD=y",
  "CONFIG_SERIAL_8250_CONSOLE=y",
  "CONFIG_KVM_GUEST=y",
  "CONFIG_VIRTIO_MMIO=m",
  "CONFIG_ACPI=y",
  "CONFIG_PCI=y",
  "CONFIG_VIRTIO_NET=m",
  "CONFIG_VIRTIO_BLK=m",
  "CONFIG_VIRTIO_VSOCKETS=m",
  "CONFIG_EXT4_FS=y",
  "CONFIG_EXT4_FS_SECURITY=y",
  "CONFIG_EROFS_FS=m",
  "CONFIG_EROFS_FS_ZIP=y",
  "CONFIG_LZ4_DECOMPRESS=y",
  "CONFIG_EROFS_FS_XATTR=y",
  "CONFIG_EROFS_FS_SECURITY=y",
  "CONFIG_SQUASHFS=m",
  "CONFIG_SQUASHFS_ZSTD=y",
  "CONFIG_SQUASHFS_XATTR=y",
].join("\n");
const KERNELS: Record<string, string | undefined> = {
  debian: DEBIAN,
  slimroot: `${DEBIAN.replace("CONFIG_VIRTIO_MMIO=m", "CONFIG_VIRTIO_MMIO=y\nCONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y").replace("CONFIG_ACPI=y\n", "")}`,
  // A kernel without squashfs or erofs, and one without its config.
  "no-squashfs": DEBIAN.replace(/^CONFIG_(SQUASHFS|EROFS)\w*=.*\n/gm, ""),
  "no-config": undefined,
};

const files = (mib: number) => ({ tmpfsBytes: mib << 20, inodes: 300 });
const rule = kernelRule({
  arch: "amd64",
  builder: "debian",
  release: "6.1.0-27-cloud-amd64",
  pageSize: 4096,
  pageSizeKnown: true,
});
const identity = (format: DiskFormat, byte: number) => ({
  format,
  fstype: format,
  offset: 1024,
  id: Buffer.alloc(16, byte),
});

type Image = "initramfs" | "initramfs-lz4" | DiskFormat | "embedded";
const IMAGES: Image[] = ["initramfs", "initramfs-lz4", "ext4", "erofs", "squashfs", "embedded"];

function facts(image: Image, config: string | undefined, volumes: boolean): BootFacts {
  const img: BootFacts["image"] =
    image === "embedded"
      ? {
          kind: "embedded",
          path: "app.vmlinuz",
          kernel: { arch: "amd64", format: "bzImage" },
          bytes: 4_000_000,
          files: files(2),
          rule,
        }
      : image === "initramfs" || image === "initramfs-lz4"
        ? {
            kind: "initramfs",
            path: "app.cpio",
            arch: "amd64",
            bytes: 3_000_000,
            lz4: image === "initramfs-lz4",
            files: files(5),
          }
        : { kind: "disk", path: `root.${image}`, identity: identity(image, 1), initBytes: 21_000 };
  return {
    arch: "amd64",
    image: img,
    volumes: volumes
      ? (["ext4", "erofs", "squashfs"] as const).map((f, i) => ({
          file: `vol.${f}`,
          path: `/data/${f}`,
          readOnly: i === 0,
          isFile: true,
          identity: identity(f, 10 + i),
        }))
      : [],
    ...(image === "embedded"
      ? {}
      : {
          kernel: {
            path: "/k/vmlinuz",
            kind: { arch: "amd64", format: "bzImage" },
            label: "K",
            ...(config !== undefined ? { config: parseKernelConfig(config) } : {}),
            gzip: false,
            modules: { path: "/k/modules.cpio", bytes: 400_000, files: files(1) },
            rule,
          },
        }),
    host: { accel: "tcg", machine: "microvm", tscKhz: 2_000_000 },
  };
}

function plans(): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const vmm of VMMS)
    for (const image of IMAGES)
      for (const [kernel, config] of Object.entries(KERNELS))
        for (const volumes of [false, true]) {
          const o: BootOptions = {
            vmm,
            forwards: [{ proto: "tcp", hostAddr: "127.0.0.1", hostPort: 8080, guestPort: 80 }],
            cpus: 1,
            env: ["A=1"],
            stopGraceMs: 10_000,
            reportKey: "ab".repeat(16),
            ...(vmm === "firecracker" ? { tap: "tap0", forwards: [], vsockCid: 3 } : {}),
          };
          const key = `${vmm} ${image} on ${kernel}${volumes ? " with volumes" : ""}`;
          try {
            const p = planBoot(facts(image, config, volumes), o);
            out[key] = { described: describePlan(p), plan: JSON.parse(JSON.stringify(p)) };
          } catch (e) {
            out[key] = { refused: (e as Error).message };
          }
        }
  return out;
}

test("every launcher x image kind x kernel plans as the snapshot says", () => {
  const got = plans();
  if (process.env.SLIMROOT_UPDATE_SNAPSHOTS) writeFileSync(SNAPSHOT, `${JSON.stringify(got, null, 2)}\n`);
  const want = JSON.parse(readFileSync(SNAPSHOT, "utf8")) as Record<string, unknown>;
  assert.deepEqual(Object.keys(got), Object.keys(want));
  for (const key of Object.keys(want)) assert.deepEqual(got[key], want[key], key);
});
