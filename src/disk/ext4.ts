/**
 * ext4 with mke2fs -d (e2fsprogs 1.47.0 populates from a directory, not a tarball) under
 * fakeroot for owners and device nodes (stage.ts), then debugfs for what mke2fs copies from
 * the staging files and cannot be made reproducible there: every inode's ctime (the time
 * of staging) and atime (reading a directory bumps it) become the build epoch.
 */
import { open } from "node:fs/promises";
import { UserError } from "../util/errors.js";
import { type Staged, underFakeroot, uuidFrom } from "./stage.js";
import { runTool, ToolError } from "./tool.js";

const MiB = 1024 * 1024;

/** The stated margin: the content plus 20% plus 24 MiB (journal, group descriptors, bitmaps). */
export const EXT4_MARGIN = { ratio: 1.2, fixedBytes: 24 * MiB } as const;

/** Bytes of an ext4 image that holds `s` with the margin, in whole MiB. */
export function ext4Size(s: Staged): number {
  const data = (s.blocks4k + s.dirs) * 4096 + s.inodes * 256;
  return Math.ceil((data * EXT4_MARGIN.ratio + EXT4_MARGIN.fixedBytes) / MiB) * MiB;
}

export async function writeExt4(
  s: Staged,
  tmp: string,
  o: { output: string; epoch: number; sizeBytes?: number },
): Promise<void> {
  const size = o.sizeBytes ?? ext4Size(s);
  const fh = await open(tmp, "r+");
  try {
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
  // e2fsprogs takes E2FSPROGS_FAKE_TIME=0 for unset (and then stamps the clock): an epoch of
  // 0 becomes 1 s for the filesystem's own times (superblock, root, lost+found, crtime).
  const env = { E2FSPROGS_FAKE_TIME: String(Math.max(1, o.epoch)) };
  // Room for what the app creates on a read-write root: 20% more inodes, at least 1024.
  const inodes = s.inodes + Math.max(1024, Math.ceil(s.inodes * 0.2));
  const args = [
    "-q",
    "-F",
    "-t",
    "ext4",
    "-b",
    "4096",
    "-I",
    "256",
    "-m",
    "0",
    "-N",
    String(inodes),
    "-U",
    uuidFrom(s.digest, 0),
    "-E",
    `hash_seed=${uuidFrom(s.digest, 16)},lazy_itable_init=0,nodiscard`,
    "-d",
    s.root,
    tmp,
  ];
  await runTool(...underFakeroot(s, "mke2fs", args), {
    output: o.output,
    env,
  }).catch((err: unknown) => {
    if (
      err instanceof ToolError &&
      /Could not allocate|while populating|too small|No free space/i.test(err.output)
    )
      throw new UserError(
        `${o.output}: the content does not fit in ${fmtMiB(size)}${o.sizeBytes ? " (--size)" : ""}; it needs about ${fmtMiB(ext4Size(s))}`,
      );
    throw err;
  });
  // mke2fs -d numbers inodes in the order it creates them: the root (2), lost+found (11),
  // then one per staged inode from 12 on (hard links share theirs).
  const used = [2, 11, ...Array.from({ length: s.inodes - 1 }, (_, i) => 12 + i)];
  const script = used.map((n) => `sif <${n}> ctime @${o.epoch}\nsif <${n}> atime @${o.epoch}\n`).join("");
  await runTool("debugfs", ["-w", "-f", "-", tmp], { output: o.output, env, stdin: script });
}

export function fmtMiB(bytes: number): string {
  return `${Math.ceil(bytes / MiB)} MiB`;
}
