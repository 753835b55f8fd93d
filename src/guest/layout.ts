/**
 * Where slimroot's guest init puts things, for the modules that build and read images.
 * The init's C source takes DEFAULT_PATH from a header generated from this file
 * (scripts/guest-header.ts, run by init/Makefile), so the two cannot disagree.
 */

/**
 * slimroot's own directory in the guest (app.conf, run.conf, the report key, the modules):
 * always a real directory, since `slimroot build` writes app.conf there.
 */
export const SLIMROOT_DIR = "etc/slimroot";

/** PATH when the image sets none (Docker's default), for the app and for finding it. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * Where the init always mounts filesystems of its own (devtmpfs, proc, sysfs; init/init.c):
 * what the app opens there is never the image's.
 */
export const API_MOUNTS: ReadonlySet<string> = new Set(["dev", "proc", "sys"]);

/**
 * The scratch directories and the mode of the tmpfs the init mounts there. One rule for every
 * root (init/README.md): a fresh tmpfs only where the image ships nothing; otherwise the image's
 * content stays, writable, starting afresh at every boot (an initramfs is RAM, a read-only
 * disk has its overlay, a read-write ext4 root gets an overlay over each). So what the app
 * opens there may be the image's: the trace keeps what of it the image ships.
 */
export const SCRATCH_DIRS: ReadonlyMap<string, number> = new Map([
  ["tmp", 0o1777],
  ["run", 0o755],
]);

/** Top-level directories the init may mount over the image: symlinks into them are kept, unfollowed. */
export const GUEST_MOUNTS: ReadonlySet<string> = new Set([...API_MOUNTS, ...SCRATCH_DIRS.keys()]);
