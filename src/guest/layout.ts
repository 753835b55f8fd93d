/**
 * Where slimroot's guest init puts things, for the modules that build and read images.
 * The init's C source takes DEFAULT_PATH from a header generated from this file
 * (scripts/guest-header.ts, run by init/Makefile), so the two cannot disagree.
 */

/** PATH when the image sets none (Docker's default), for the app and for finding it. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * The top-level directories the init mounts over the image (init/init.c: devtmpfs, proc,
 * sysfs, and tmpfs on /tmp and /run): what the app opens there is not the image's.
 */
export const GUEST_MOUNTS: ReadonlySet<string> = new Set(["dev", "proc", "sys", "tmp", "run"]);
