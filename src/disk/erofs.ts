/**
 * erofs with mkfs.erofs 1.5 under fakeroot (stage.ts: 1.5 takes owners only from lstat or
 * one --force-uid for all). lz4hc at its highest level: Debian's 6.1 kernel has EROFS_FS_ZIP
 * with LZ4 built in (CONFIG_LZ4_DECOMPRESS=y); 1.5 offers only lz4 and lz4hc. 64 KiB
 * physical clusters (kernel 5.13+) compress much better than the 4 KiB default.
 *
 * `build --compress none` leaves the data uncompressed: twice the bytes for the traced nginx
 * (9.83 against 4.92 MB), but its app no longer waits on the guest decompressing each
 * cluster it touches, which under TCG (and on a slow core) is the larger cost: nginx's
 * start, from exec to the first answer, took 0.74 s against 1.13 s (README, "Cold start").
 * Smaller clusters do not help (4 KiB: 1.10 s, 16 KiB: 1.02 s, and larger files).
 */
import { type Staged, underFakeroot, uuidFrom } from "./stage.js";
import { runTool } from "./tool.js";

export const EROFS_COMPRESSION = "lz4hc,12";

export async function writeErofs(
  s: Staged,
  tmp: string,
  o: { output: string; epoch: number; uncompressed?: boolean },
): Promise<void> {
  const args = [
    ...(o.uncompressed ? [] : [`-z${EROFS_COMPRESSION}`, "-C65536"]),
    `-T${o.epoch}`,
    `-U${uuidFrom(s.digest, 0)}`,
    "--quiet",
    tmp,
    s.root,
  ];
  await runTool(...underFakeroot(s, "mkfs.erofs", args), { output: o.output });
}
