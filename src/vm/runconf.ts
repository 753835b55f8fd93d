import { buffer } from "node:stream/consumers";
import { escapeConfValue } from "../appconfig/appconfig.js";
import { newcArchiveSize, S_IFREG } from "../cpio/newc.js";
import { type CpioRecord, directoryChain, writeRecords } from "../cpio/writer.js";
import { SLIMROOT_DIR } from "../guest/layout.js";
import { UserError } from "../util/errors.js";
import { REPORT_KEY_PATH } from "./report.js";

/** Where the launcher's settings go in the guest (docs/app-config.md). */
export const RUN_CONF_PATH = `${SLIMROOT_DIR}/run.conf`;

/** QEMU user networking's fixed addresses. */
export const USER_NET = { ip: "10.0.2.15/24", gateway: "10.0.2.2", dns: "10.0.2.3" } as const;

/** eth0's settings in the guest: address with prefix length, default route, resolver. */
export interface GuestNetwork {
  ip: string;
  gateway?: string;
  dns?: string;
}

export interface RunSettings {
  /** eth0's settings; true: QEMU user networking's address, route and resolver. */
  network: boolean | GuestNetwork;
  /** NAME=VALUE, applied after the image's env. */
  env: readonly string[];
  /** Replaces the image's argv when given. */
  args?: readonly string[];
  /** Guest directory of kernel modules to load (absolute). */
  modulesDir?: string;
  hostname?: string;
  /** Record mode: the init reports the files the app opened (init/trace.c). */
  trace?: boolean;
  /** `root ...` and `volume ...` records for init/root.c (src/vm/disks.ts writes them). */
  disks?: readonly string[];
  /** The virtio-serial port name of the snapshot control channel (init/control.c). */
  control?: string;
}

/** The text of run.conf, in the format of app.conf. */
export function runConfText(s: RunSettings): string {
  const lines = ["# written by slimroot run", "version 1"];
  const net: GuestNetwork | undefined = s.network === true ? USER_NET : s.network || undefined;
  if (net) {
    lines.push(`ip ${net.ip}`);
    if (net.gateway) lines.push(`gateway ${net.gateway}`);
    if (net.dns) lines.push(`dns ${net.dns}`);
  }
  if (s.modulesDir) lines.push(`modules ${escapeConfValue(s.modulesDir, "modules directory")}`);
  if (s.hostname) lines.push(`hostname ${escapeConfValue(s.hostname, "hostname")}`);
  if (s.trace) lines.push("trace 1");
  if (s.control) lines.push(`control ${escapeConfValue(s.control, "control channel")}`);
  for (const d of s.disks ?? []) lines.push(escapeConfValue(d, "disk record"));
  for (const a of s.args ?? []) lines.push(`arg ${escapeConfValue(a, "argument")}`);
  for (const e of s.env) {
    if (!/^[^=]+=/.test(e)) throw new UserError(`-e ${e}: expected NAME=VALUE`);
    lines.push(`env ${escapeConfValue(e, `-e ${e.slice(0, e.indexOf("="))}`)}`);
  }
  return `${lines.join("\n")}\n`;
}

/**
 * run.conf as a small newc archive to append to the image, with this boot's report key
 * (report.ts) when given: the init reads and deletes it before the app starts. Its /etc and
 * /etc/slimroot entries are plain 0755 root directories, which is what every slimroot image
 * has there (the unpacker would replace a path of another type, so only real directories
 * are named). Without run.conf text, only the key.
 */
function runConfRecords(text: string | undefined, reportKey?: string): CpioRecord[] {
  const file = (name: string, mode: number, body: string) =>
    ({ name, mode: S_IFREG | mode, uid: 0, gid: 0, mtime: 0, body: Buffer.from(body) }) as const;
  return [
    ...directoryChain(SLIMROOT_DIR),
    ...(text === undefined ? [] : [file(RUN_CONF_PATH, 0o644, text)]),
    ...(reportKey ? [file(REPORT_KEY_PATH, 0o600, reportKey)] : []),
  ];
}

export async function runConfCpio(text: string | undefined, reportKey?: string): Promise<Buffer> {
  return buffer(writeRecords(runConfRecords(text, reportKey)));
}

/** The size of runConfCpio(text, reportKey), known without writing it (the boot plan sizes the initrd). */
export function runConfCpioSize(text: string | undefined, reportKey?: string): number {
  return newcArchiveSize(
    runConfRecords(text, reportKey).map((r) => ({
      name: r.name,
      size: Buffer.isBuffer(r.body) ? r.body.length : 0,
    })),
  );
}
