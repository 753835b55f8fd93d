/**
 * The options that say how an image is made from its source, shared by `build` and
 * `trace`: a profile is only good for an image built with the same ones.
 */
import type { Command } from "commander";
import { parsePlatform } from "../image/platform.js";
import type { BuildOptions, HostAddition } from "../pipeline/build.js";
import { UserError } from "../util/errors.js";
import { collect } from "./parse.js";

export function parseAddition(spec: string): HostAddition {
  const i = spec.lastIndexOf(":");
  if (i <= 0 || i === spec.length - 1) throw new UserError(`--add ${spec}: expected SRC:DST`);
  const dest = spec.slice(i + 1);
  if (!dest.startsWith("/")) throw new UserError(`--add ${spec}: DST must be an absolute path in the image`);
  if (dest.split("/").includes(".."))
    throw new UserError(`--add ${spec}: DST must not contain ".." (it names a place in the image)`);
  return { source: spec.slice(0, i), dest };
}

export function parseOwner(spec: string): { uid: number; gid: number } {
  const m = /^(\d+)(?::(\d+))?$/.exec(spec);
  if (!m) throw new UserError(`--chown ${spec}: expected UID[:GID] (numbers)`);
  return { uid: Number(m[1]), gid: Number(m[2] ?? m[1]) };
}

export function sourceDateEpoch(): number {
  const v = process.env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === "") return 0;
  if (!/^\d+$/.test(v)) throw new UserError(`SOURCE_DATE_EPOCH=${v}: expected a number of seconds`);
  return Number(v);
}

export function addImageOptions(cmd: Command): Command {
  return cmd
    .option("--platform <os/arch>", "platform to pick from a multi-platform image (default: this machine's)")
    .option("--insecure", "allow plain http for docker:// registries")
    .option("--entrypoint <path>", "replace the image's Entrypoint (and drop its Cmd)")
    .option("-e, --env <K=V>", "set an environment variable (repeatable)", collect)
    .option("-w, --workdir <dir>", "working directory of the app")
    .option("-u, --user <user[:group]>", "user to run the app as (names resolved in the image)")
    .option("--add <src:dst>", "copy a host file or directory into the image (repeatable)", collect)
    .option("--chown <uid:gid>", "owner of --add'ed files (default 0:0)");
}

export type ImageSettings = Pick<
  BuildOptions,
  "source" | "platform" | "insecure" | "overrides" | "additions" | "addOwner" | "epoch"
>;

/** The image options as build settings; `command` is what came after `--`. */
export function imageSettings(
  source: string,
  command: string[],
  opts: Record<string, unknown>,
): ImageSettings {
  return {
    source,
    platform: opts.platform ? parsePlatform(opts.platform as string) : undefined,
    insecure: Boolean(opts.insecure),
    overrides: {
      entrypoint: opts.entrypoint as string | undefined,
      cmd: command.length ? command : undefined,
      env: opts.env as string[] | undefined,
      workdir: opts.workdir as string | undefined,
      user: opts.user as string | undefined,
    },
    additions: ((opts.add as string[] | undefined) ?? []).map(parseAddition),
    addOwner: opts.chown ? parseOwner(opts.chown as string) : undefined,
    epoch: sourceDateEpoch(),
  };
}
