/**
 * Snapshots without booting: the file's header frame (artifact/snapshot.ts) and what identify
 * makes of it, the control channel in the boot plan and QEMU's argv, and resume's refusals
 * of options a snapshot fixed. The boots are in test/snapshot.test.ts.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, open, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { identify, type SnapshotArtifact } from "../artifact/identify.js";
import {
  isSnapshotHead,
  readSnapshotHeader,
  type SnapshotHeader,
  snapshotHeaderFrame,
} from "../artifact/snapshot.js";
import { CONTROL_MODULE, CONTROL_PORT_NAME } from "./control.js";
import type { BootOptions } from "./plan.js";
import { kernelNeeds } from "./plan.js";
import { qemuCommand } from "./qemu.js";
import { cachedSha256, planResume, ramDigest } from "./resume.js";
import { runConfText } from "./runconf.js";

const HEADER: SnapshotHeader = {
  format: 2,
  created: "2026-12-03T00:00:00.000Z",
  arch: "amd64",
  qemu: { binary: "qemu-system-x86_64", version: "QEMU emulator version 7.2.0" },
  kernel: { path: "/k/vmlinuz", sha256: "a".repeat(64), bytes: 10 },
  ram: { file: "app.snap.ram", sha256: "c".repeat(64), bytes: 256 << 20 },
  disks: [],
  initrd: [{ kind: "run.conf", bytes: 512 }],
  plan: { vmm: "qemu", cpus: 1 },
  reportKey: "b".repeat(32),
  memory: { guestMiB: 256, inUseBytes: 1, nonZeroBytes: 2, ramFileBytes: 4, streamBytes: 3 },
};
const OPTIONS: BootOptions = { vmm: "qemu", forwards: [], cpus: 1, env: [], stopGraceMs: 1000 };

async function withFile<T>(bytes: Buffer, fn: (path: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "slimroot-resume-test-"));
  try {
    const path = join(dir, "app.snap");
    await writeFile(path, bytes);
    return await fn(path);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("a snapshot's header frame reads back, and identify knows the file by it", async () => {
  const stream = Buffer.from("zstd frames follow");
  const frame = snapshotHeaderFrame(HEADER);
  assert.ok(isSnapshotHead(frame));
  await withFile(Buffer.concat([frame, stream]), async (path) => {
    const { header, streamOffset } = await readSnapshotHeader(path);
    assert.deepEqual(header, HEADER);
    assert.equal(streamOffset, frame.length);
    const a = await identify(path);
    assert.equal(a.kind, "snapshot");
    assert.equal((a as SnapshotArtifact).arch, "amd64");
  });
});

test("any other first bytes are not a snapshot", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 64 }), (b) => {
      const head = Buffer.from(b);
      // Only the frame magic and the tag together make one.
      return (
        isSnapshotHead(head) ===
        (head.length >= 28 &&
          head.subarray(8, 28).toString("latin1") === "SLIMROOT-SNAPSHOT 1\n" &&
          head.readUInt32LE(0) === 0x184d2a5e)
      );
    }),
  );
});

test("a damaged header is one line naming the file", async () => {
  const frame = snapshotHeaderFrame({ ...HEADER, reportKey: "not hex" });
  await withFile(frame, async (path) => {
    await assert.rejects(
      readSnapshotHeader(path),
      /app\.snap: a slimroot snapshot with a damaged header \(reportKey\)/,
    );
  });
  // The RAM file is a name beside the snapshot, never a path elsewhere.
  const elsewhere = snapshotHeaderFrame({ ...HEADER, ram: { ...HEADER.ram, file: "../etc/ram" } });
  await withFile(elsewhere, async (path) => {
    await assert.rejects(
      readSnapshotHeader(path),
      /app\.snap: a slimroot snapshot with a damaged header \(ram\)/,
    );
  });
  const truncated = snapshotHeaderFrame(HEADER).subarray(0, 40);
  await withFile(truncated, async (path) => {
    await assert.rejects(
      readSnapshotHeader(path),
      /app\.snap: not a slimroot snapshot \(damaged header frame\)/,
    );
  });
});

test("a format 1 snapshot (the RAM inside the file) is refused in one line saying to make it again", async () => {
  const { ram: _r, ...old } = HEADER;
  const frame = snapshotHeaderFrame({ ...old, format: 1 } as unknown as SnapshotHeader);
  await withFile(Buffer.concat([frame, Buffer.from("zstd frames")]), async (path) => {
    for (const read of [readSnapshotHeader, identify])
      await assert.rejects(read(path), (err: Error) => {
        assert.match(
          err.message,
          /app\.snap: a snapshot of an earlier slimroot \(format 1, the RAM inside the file\); this one resumes format 2 .*make it again with slimroot snapshot/,
        );
        assert.doesNotMatch(err.message, /\n/);
        return true;
      });
  });
});

/** Writes `pages` (each undefined: a hole; else its bytes) as a file, sparse or every byte written. */
async function ramFile(path: string, pages: (Buffer | undefined)[], sparse: boolean): Promise<void> {
  const fh = await open(path, "w");
  try {
    for (const [i, p] of pages.entries()) {
      const bytes = p ?? (sparse ? undefined : Buffer.alloc(4096));
      if (bytes) await fh.write(bytes, 0, bytes.length, i * 4096);
    }
    await fh.truncate(pages.length * 4096);
  } finally {
    await fh.close();
  }
}

test("a RAM file's digest is its non-zero pages and size, however its zeros are stored", async () => {
  const dir = await mkdtemp(join(tmpdir(), "slimroot-ramdigest-test-"));
  try {
    const page = fc.oneof(
      fc.constant(undefined),
      fc.constant(Buffer.alloc(4096)),
      fc.uint8Array({ minLength: 4096, maxLength: 4096 }).map((b) => Buffer.from(b)),
      fc.nat(4095).map((at) => Buffer.alloc(4096).fill(1, at, at + 1)),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(page, { maxLength: 300 }), async (pages) => {
        const [a, b] = [join(dir, "a"), join(dir, "b")];
        await ramFile(a, pages, true);
        await ramFile(b, pages, false);
        const [da, db] = [await ramDigest(a), await ramDigest(b)];
        assert.deepEqual(da, db);
        // The definition, independently: each non-zero page's number (u64 BE) and bytes, then the size.
        const h = createHash("sha256");
        let nonZero = 0;
        for (const [i, p] of pages.entries())
          if (p?.some((x) => x !== 0)) {
            const n = Buffer.alloc(8);
            n.writeBigUInt64BE(BigInt(i));
            h.update(n).update(p);
            nonZero += 4096;
          }
        const size = Buffer.alloc(8);
        size.writeBigUInt64BE(BigInt(pages.length * 4096));
        assert.deepEqual(da, {
          sha256: h.update(size).digest("hex"),
          bytes: pages.length * 4096,
          nonZeroBytes: nonZero,
        });
      }),
      { numRuns: 40 },
    );
    // One byte anywhere, or one page more of zeros, is another RAM.
    const base = [Buffer.alloc(4096, 7), undefined, undefined];
    await ramFile(join(dir, "a"), base, true);
    await ramFile(join(dir, "b"), [...base, undefined], true);
    await ramFile(join(dir, "c"), [base[0], Buffer.alloc(4096).fill(1, 4095), undefined], true);
    const [a, b, c] = await Promise.all(["a", "b", "c"].map((n) => ramDigest(join(dir, n))));
    assert.equal(new Set([a!.sha256, b!.sha256, c!.sha256]).size, 3);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** A QEMU command's options that the argv tests below share. */
const QEMU_BASE: Parameters<typeof qemuCommand>[0] = {
  arch: "amd64",
  machine: "microvm",
  accel: "tcg",
  kernel: "k",
  memMiB: 64,
  cpus: 1,
  forwards: [],
  qmpSocket: "/q.sock",
};

test("a snapshot's RAM file: shared while the snapshot is made, private (copy-on-write) on resume", () => {
  const argv = (shared: boolean) =>
    qemuCommand({ ...QEMU_BASE, ramFile: { path: "/s/a,b.snap.ram", shared } }).join(" ");
  assert.match(
    argv(true),
    / -object memory-backend-file,id=ram0,size=64M,mem-path=\/s\/a,,b\.snap\.ram,share=on -machine memory-backend=ram0 /,
  );
  assert.match(argv(false), /mem-path=\/s\/a,,b\.snap\.ram,share=off -machine memory-backend=ram0 /);
  const a: SnapshotArtifact = {
    kind: "snapshot",
    path: "/snaps/app.snap",
    bytes: 1,
    arch: "amd64",
    header: HEADER,
    streamOffset: 1,
  };
  // Beside the snapshot, whatever the saved plan said (the snapshot boot's temp name).
  const saved = { ...a, header: { ...HEADER, plan: { vmm: "qemu", ram: { path: "/tmp/x", shared: true } } } };
  assert.deepEqual(planResume(saved, OPTIONS, 0).ram, { path: "/snaps/app.snap.ram", shared: false });
});

test("a snapshot boot carries the control channel: run.conf record, the driver module, the port", () => {
  assert.match(
    runConfText({ network: true, env: [], control: CONTROL_PORT_NAME }),
    /^control org\.slimroot\.control$/m,
  );
  const f = {
    arch: "amd64" as const,
    image: {
      kind: "initramfs" as const,
      path: "x",
      arch: "amd64" as const,
      bytes: 1,
      lz4: false,
      files: { tmpfsBytes: 1, inodes: 1 },
    },
    volumes: [],
    host: { accel: "tcg" as const, machine: "microvm" as const },
  };
  assert.deepEqual(kernelNeeds(f, { ...OPTIONS, control: true }).modules, [CONTROL_MODULE]);
  assert.deepEqual(kernelNeeds(f, OPTIONS).modules, []);
  const argv = qemuCommand({
    ...QEMU_BASE,
    controlSocket: "/c.sock",
    incoming: "exec:zstd -dcq -- /a.snap",
  }).join(" ");
  assert.match(
    argv,
    /-chardev socket,id=ctl,path=\/c\.sock,server=on,wait=off -device virtio-serial-device,id=vser0 -device virtserialport,bus=vser0\.0,nr=1,chardev=ctl,name=org\.slimroot\.control/,
  );
  assert.match(argv, /-incoming exec:zstd -dcq -- \/a\.snap/);
});

test("a resume refuses, in one line, the options the snapshot fixed", async () => {
  const a: SnapshotArtifact = {
    kind: "snapshot",
    path: "app.snap",
    bytes: 1,
    arch: "amd64",
    header: HEADER,
    streamOffset: 1,
  };
  assert.throws(
    () => planResume(a, { ...OPTIONS, memMiB: 512, env: ["A=1"] }, 0),
    /app\.snap: --mem, -e: fixed when the snapshot was made/,
  );
  assert.throws(() => planResume(a, OPTIONS, 1), /app\.snap: --volume: fixed when the snapshot was made/);
  // What a resume cannot change, and used to pass over without a word.
  assert.throws(
    () => planResume(a, { ...OPTIONS, cpus: 2, tap: "tap0", guestIp: "10.0.0.5/24", vsockCid: 5 }, 0),
    /app\.snap: --cpus 2 \(the snapshot has 1\), --tap, --guest-ip, --vsock: fixed when the snapshot was made/,
  );
  // --timeline is a resume's own (where its time went), not fixed.
  assert.equal(planResume(a, { ...OPTIONS, timeline: true }, 0).resume?.snapshot.endsWith("app.snap"), true);
});

test("a checked file's sha256 is remembered by its inode and times, never across a change", async () => {
  const dir = await mkdtemp(join(tmpdir(), "slimroot-digest-test-"));
  const saved = process.env.SLIMROOT_CACHE;
  process.env.SLIMROOT_CACHE = join(dir, "cache");
  try {
    const file = join(dir, "vmlinux");
    await writeFile(file, "kernel one");
    const sha = (text: string) => createHash("sha256").update(text).digest("hex");
    // Just written: hashed, not remembered (a change in the same clock tick could hide).
    assert.equal((await cachedSha256(file)).sha256, sha("kernel one"));
    assert.equal(existsSync(join(dir, "cache", "digests.json")), false);
    // Settled: remembered, and what is remembered is what is answered.
    await new Promise((r) => setTimeout(r, 2100));
    assert.deepEqual(await cachedSha256(file), { sha256: sha("kernel one"), bytes: 10 });
    const cache = join(dir, "cache", "digests.json");
    const [key] = Object.keys(JSON.parse(await readFile(cache, "utf8")) as object);
    await writeFile(cache, JSON.stringify({ [key!]: "f".repeat(64) }));
    assert.equal((await cachedSha256(file)).sha256, "f".repeat(64));
    // The same size written again, its mtime set back: another ctime, hashed again.
    const st = await stat(file);
    await writeFile(file, "kernel two");
    await utimes(file, st.atime, st.mtime);
    assert.equal((await cachedSha256(file)).sha256, sha("kernel two"));
  } finally {
    if (saved === undefined) delete process.env.SLIMROOT_CACHE;
    else process.env.SLIMROOT_CACHE = saved;
    await rm(dir, { recursive: true, force: true });
  }
});
