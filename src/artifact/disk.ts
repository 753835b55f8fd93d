/**
 * What a disk image says about its app (/init's architecture, /etc/slimroot/app.conf), read
 * on the host without mounting it: one file at a time through each format's Debian tool, its
 * output bounded. A format whose tool cannot read a single file says so in one line.
 */
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { APP_CONFIG_PATH, decodeAppConfig } from "../appconfig/appconfig.js";
import type { DiskFormat } from "../disk/formats.js";
import { elfArch } from "../elf/elf.js";
import { INIT_PATH } from "../guest/init-binary.js";
import { toolNotFound } from "../util/tools.js";
import type { InitramfsFacts } from "./initramfs.js";

/** How each format's tool writes one image file to stdout, or why none can. */
const FILE_READERS: Readonly<
  Record<DiskFormat, ((image: string, path: string) => [string, string[]]) | string>
> = {
  // debugfs says "File not found" on stderr and exits 0: an empty output is a missing file.
  ext4: (image, path) => ["debugfs", ["-R", `cat /${path}`, image]],
  squashfs: (image, path) => ["unsquashfs", ["-no-progress", "-cat", image, `/${path}`]],
  erofs: "erofs-utils 1.5 reads no single file out of an image (only --extract of all of it)",
};

/** An app config is a few lines; anything larger is not ours. */
const MAX_APP_CONF = 1 << 20;
/** An ELF header's first bytes: enough for e_machine. */
const ELF_HEAD = 64;

/** The first `max` bytes a tool writes to stdout (it is stopped there); undefined when it fails. */
function firstBytes(command: string, args: string[], max: number): Promise<Buffer | undefined> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "ignore"] });
    const parts: Buffer[] = [];
    let total = 0;
    child.stdout.on("data", (d: Buffer) => {
      if (total >= max) return;
      parts.push(d);
      total += d.length;
      if (total >= max) child.kill();
    });
    child.on("error", (e: NodeJS.ErrnoException) =>
      fail(e.code === "ENOENT" ? new Error(toolNotFound(command)) : e),
    );
    child.on("close", (code) => {
      const out = Buffer.concat(parts).subarray(0, max);
      done(code === 0 || total >= max ? out : undefined);
    });
  });
}

/** /init's architecture and the app config of disk image `path` of `format`. */
export async function diskFacts(path: string, format: DiskFormat): Promise<InitramfsFacts> {
  const reader = FILE_READERS[format];
  if (typeof reader === "string") return { noArch: `${path}: ${format}: ${reader}` };
  // Absolute, so no image name is ever read as an option.
  const image = resolve(path);
  try {
    const init = await firstBytes(...reader(image, INIT_PATH), ELF_HEAD);
    const conf = await firstBytes(...reader(image, APP_CONFIG_PATH), MAX_APP_CONF + 1);
    const app = conf?.length && conf.length <= MAX_APP_CONF ? decodeAppConfig(conf.toString()) : undefined;
    const arch = init?.length ? elfArch(init) : undefined;
    const noArch = init?.length
      ? `${path}: /init is not an x86-64 or arm64 ELF executable`
      : `${path}: no /init on the disk`;
    return { ...(arch ? { arch } : { noArch }), ...(app ? { app } : {}) };
  } catch (err) {
    return { noArch: `${path}: ${(err as Error).message}` };
  }
}
