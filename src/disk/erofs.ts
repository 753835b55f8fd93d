/**
 * erofs with mkfs.erofs 1.5 under fakeroot (stage.ts: 1.5 takes owners only from lstat or
 * one --force-uid for all). lz4hc: Debian's 6.1 kernel has EROFS_FS_ZIP with LZ4 built in
 * (CONFIG_LZ4_DECOMPRESS=y); 1.5 offers only lz4 and lz4hc. Level 9 (LZ4HC's default), not
 * 12: on Debian's 186 MB nginx tree 12 took 3.2x the CPU (15.6 against 4.7 s) for 0.3% fewer
 * bytes; decompressing either is the same work. 64 KiB physical clusters (kernel 5.13+)
 * compress much better than the 4 KiB default.
 *
 * Uncompressed was tried and not kept: twice the bytes for the traced nginx (9.83 against
 * 4.92 MB) for ready 1.55 against 1.59 s under TCG (README, "Cold start"): nginx's start is
 * not spent decompressing. Smaller clusters (4 or 16 KiB) made larger files, no faster.
 */
import { type Staged, underFakeroot, uuidFrom } from "./stage.js";
import { runTool } from "./tool.js";

export const EROFS_COMPRESSION = "lz4hc,9";

export async function writeErofs(
  s: Staged,
  tmp: string,
  o: { output: string; epoch: number },
): Promise<void> {
  const args = [
    `-z${EROFS_COMPRESSION}`,
    "-C65536",
    `-T${o.epoch}`,
    `-U${uuidFrom(s.digest, 0)}`,
    "--quiet",
    tmp,
    s.root,
  ];
  await runTool(...underFakeroot(s, "mkfs.erofs", args), { output: o.output });
}
