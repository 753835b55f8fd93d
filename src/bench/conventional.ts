/**
 * The routes people take by hand today, measured in the same run as slimroot: unpack the whole
 * image with the usual tools (umoci, skopeo, tar, cp), put a static busybox and a shell-script
 * init in it, then either `find | cpio | gzip` it into an initramfs or `mkfs.ext4 -d` it into
 * a disk sized to fit the tree (as a user who knows the tree's size would make it; a fixed
 * 100 MB, the seed's, cannot hold a 183 MB tree). Everything here runs fixed commands bench writes itself: nothing the
 * image says is run on the host (the app's command only goes into the guest's script).
 */
import { execFile } from "node:child_process";
import { copyFile, lstat, mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Arch } from "../arch/arch.js";
import { bootModules, cachedKernel } from "../kernel/fetch.js";
import type { Transport } from "../kernel/manifest.js";
import { parseSourceRef } from "../source/schemes.js";
import { shellQuote } from "../util/shell.js";

const run = promisify(execFile);

/** What the app runs, as `slimroot inspect --json` reports it. */
export interface AppCommand {
  args: string[];
  env: string[];
  workdir: string;
}

/** Where busybox and the modules go in the hand-made tree: out of the image's way. */
const TOOLS = ".handmade";

const MiB = 1 << 20;
const BLOCK = 4096;

/** What a tree takes on a disk: its files' bytes in 4 KiB blocks (directories a block each), its inodes. */
export interface TreeSize {
  bytes: number;
  inodes: number;
}

/** Walks `dir` without following links (`du --apparent-size` rounded to blocks, `find | wc -l`). */
export async function treeSize(dir: string): Promise<TreeSize> {
  let bytes = 0;
  let inodes = 0;
  const seen = new Set<string>();
  const pending = [dir];
  while (pending.length) {
    const d = pending.pop()!;
    for (const e of await readdir(d, { withFileTypes: true })) {
      const path = join(d, e.name);
      const st = await lstat(path);
      const id = `${st.dev}:${st.ino}`;
      if (seen.has(id)) continue; // a hard link: one inode, its blocks once
      seen.add(id);
      inodes++;
      if (st.isDirectory()) pending.push(path);
      // ext4 keeps a symlink under 60 bytes in its inode.
      if (st.isFile() || st.isDirectory() || (st.isSymbolicLink() && st.size >= 60))
        bytes += Math.max(1, Math.ceil(st.size / BLOCK)) * BLOCK;
    }
  }
  return { bytes, inodes: inodes + 1 };
}

/**
 * The hand-made ext4's size, as a user sizing it to the tree would: the tree (256-byte inodes
 * included) plus 30% for ext4's own metadata and the app's writes, plus 16 MiB (the journal and
 * the group tables of a small file system), in whole MiB.
 */
export function handmadeDiskMiB(t: TreeSize): number {
  return Math.ceil(((t.bytes + t.inodes * 256) * 1.3) / MiB) + 16;
}

/** How the hand-made ext4 was sized, for the bench table. */
export const DISK_SIZING = "(tree + inodes) x 1.3 + 16 MiB";

/** The host tools the hand-made routes run for `source` (checked before bench starts). */
export function conventionalTools(source: string): string[] {
  const unpack: Record<string, string[]> = {
    oci: ["umoci"],
    "docker-archive": ["skopeo", "umoci"],
    docker: ["skopeo", "umoci"],
    tar: ["tar"],
    dir: ["cp"],
  };
  return [...(unpack[parseSourceRef(source).transport] ?? []), "cpio", "gzip", "dd", "mkfs.ext4"];
}

/** Unpacks `source` into `dir` the conventional way for its transport. */
export async function unpackConventionally(
  source: string,
  dir: string,
  scratch: string,
  insecure: boolean,
): Promise<void> {
  const ref = parseSourceRef(source);
  const viaOci = async (ociRef: string) => {
    await run("umoci", ["raw", "unpack", "--image", ociRef, dir], { maxBuffer: 1 << 26 });
  };
  switch (ref.transport) {
    case "oci":
      return viaOci(ref.value);
    case "docker-archive":
    case "docker": {
      const layout = join(scratch, "skopeo-oci");
      const tls = ref.transport === "docker" && insecure ? ["--src-tls-verify=false"] : [];
      await run("skopeo", ["copy", "--quiet", ...tls, source, `oci:${layout}:bench`], { maxBuffer: 1 << 26 });
      return viaOci(`${layout}:bench`);
    }
    case "tar":
      await mkdir(dir, { recursive: true });
      await run("tar", ["-xpf", ref.value, "-C", dir], { maxBuffer: 1 << 26 });
      return;
    case "dir":
      await mkdir(dir, { recursive: true });
      await run("cp", ["-a", `${ref.value}/.`, dir]);
      return;
    default:
      throw new Error(
        `${source}: the hand-made routes start from an image or a rootfs, not ${ref.transport}:`,
      );
  }
}

/**
 * Adds /init (a busybox shell script: mounts, module loading, the network as QEMU's user-mode
 * net expects it, then exec of the app) and what it needs.
 */
export async function addScriptInit(
  dir: string,
  app: AppCommand,
  o: { arch: Arch; kernelDir: string; transport: Transport; busybox: string },
): Promise<void> {
  await mkdir(join(dir, TOOLS, "modules"), { recursive: true });
  await copyFile(o.busybox, join(dir, TOOLS, "busybox"));
  const manifest = await cachedKernel(o.kernelDir);
  const modules = manifest ? await bootModules(manifest, o.transport) : [];
  const loads: string[] = [];
  for (const [i, m] of modules.entries()) {
    const name = `${String(i).padStart(2, "0")}-${m.name}.ko`;
    await copyFile(join(o.kernelDir, m.file), join(dir, TOOLS, "modules", name));
    loads.push(`$B insmod /${TOOLS}/modules/${name}`);
  }
  const script = [
    `#!/${TOOLS}/busybox sh`,
    `B=/${TOOLS}/busybox`,
    "$B mkdir -p /proc /sys /dev /tmp /run",
    "$B mount -t proc proc /proc",
    "$B mount -t sysfs sys /sys",
    "$B mount -t devtmpfs dev /dev",
    ...loads,
    "$B ip link set lo up",
    "$B ip link set eth0 up",
    "$B ip addr add 10.0.2.15/24 dev eth0",
    "$B ip route add default via 10.0.2.2",
    `cd ${shellQuote([app.workdir || "/"])}`,
    `exec $B env -i ${shellQuote(app.env)} ${shellQuote(app.args)}`,
    "",
  ].join("\n");
  await writeFile(join(dir, "init"), script, { mode: 0o755 });
}

/** `find . | cpio -o -H newc | gzip -6`, as the hand-made initramfs is packed. */
export async function packInitramfs(dir: string, out: string): Promise<void> {
  await run("sh", ["-c", `find . | cpio --quiet -o -H newc | gzip -6 > ${shellQuote([out])}`], { cwd: dir });
}

/** An ext4 sized to hold the tree (handmadeDiskMiB), made without mounting (`mkfs.ext4 -d`); returns its MiB. */
export async function packDisk(dir: string, out: string): Promise<number> {
  const mib = handmadeDiskMiB(await treeSize(dir));
  await run("dd", ["if=/dev/zero", `of=${out}`, "bs=1M", `count=${mib}`, "status=none"]);
  await run("mkfs.ext4", ["-q", "-F", "-d", dir, out]).catch((err: Error & { stderr?: string }) => {
    throw new Error(`mkfs.ext4 -d into ${mib} MiB: ${(err.stderr ?? err.message).trim().split("\n").pop()}`);
  });
  return mib;
}
