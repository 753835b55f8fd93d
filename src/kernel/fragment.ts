/**
 * The checker of a user's `--config-fragment`, run before anything is downloaded or compiled.
 * Refuses, in one line naming the file, the line and the option: the options slimroot owns
 * (the initramfs and the command line, which decide what runs as PID 1), options that make
 * the build read a host file, any path or make expansion in a string value, turning off an
 * option of the table of kernel requirements, and lines kconfig would not understand.
 */
import type { Arch } from "../arch/arch.js";
import { limitsFromEnv } from "../util/budget.js";
import { UserError } from "../util/errors.js";
import { readInputText, statInput } from "../util/input-file.js";
import { lockedOptions } from "./requirements.js";

/** Options slimroot sets itself, or that would let a fragment replace what runs as PID 1. */
export const OWNED_OPTIONS: ReadonlyMap<string, string> = new Map([
  ["CONFIG_INITRAMFS_SOURCE", "the built-in initramfs is slimroot's (--embed)"],
  ["CONFIG_INITRAMFS_ROOT_UID", "the built-in initramfs is slimroot's (--embed)"],
  ["CONFIG_INITRAMFS_ROOT_GID", "the built-in initramfs is slimroot's (--embed)"],
  ["CONFIG_INITRAMFS_FORCE", "it ignores slimroot's initrd"],
  ["CONFIG_CMDLINE", "the kernel command line is slimroot's"],
  ["CONFIG_CMDLINE_BOOL", "the kernel command line is slimroot's"],
  ["CONFIG_CMDLINE_OVERRIDE", "the kernel command line is slimroot's"],
  ["CONFIG_CMDLINE_FORCE", "the kernel command line is slimroot's"],
  ["CONFIG_CMDLINE_EXTEND", "the kernel command line is slimroot's"],
  ["CONFIG_CMDLINE_FROM_BOOTLOADER", "the kernel command line is slimroot's"],
  ["CONFIG_BOOT_CONFIG_EMBED", "bootconfig can set the init and the command line"],
  ["CONFIG_BOOT_CONFIG_EMBED_FILE", "it reads a host file into the kernel"],
  ["CONFIG_DEFAULT_INIT", "the init is slimroot's"],
  ["CONFIG_STATIC_USERMODEHELPER", "it runs a program of the image as root"],
  ["CONFIG_STATIC_USERMODEHELPER_PATH", "it runs a program of the image as root"],
  ["CONFIG_UEVENT_HELPER", "it runs a program of the image as root"],
  ["CONFIG_UEVENT_HELPER_PATH", "it runs a program of the image as root"],
  ["CONFIG_MODPROBE_PATH", "it runs a program of the image as root"],
  ["CONFIG_EXTRA_FIRMWARE", "it reads host files into the kernel"],
  ["CONFIG_EXTRA_FIRMWARE_DIR", "it reads host files into the kernel"],
  ["CONFIG_MODULE_SIG_KEY", "it reads a host file into the build"],
  ["CONFIG_SYSTEM_TRUSTED_KEYS", "it reads a host file into the kernel"],
  ["CONFIG_SYSTEM_EXTRA_CERTIFICATE", "it reserves room for a key added from a host file"],
  ["CONFIG_SYSTEM_REVOCATION_KEYS", "it reads a host file into the kernel"],
  ["CONFIG_SYSTEM_BLACKLIST_HASH_LIST", "it reads a host file into the kernel"],
  ["CONFIG_ACPI_CUSTOM_DSDT_FILE", "it reads a host file into the kernel"],
  ["CONFIG_ACPI_TABLE_UPGRADE", "it takes ACPI tables from the initrd"],
  ["CONFIG_BUILTIN_DTB", "it reads a host file into the kernel"],
  ["CONFIG_BUILTIN_DTB_SOURCE", "it reads a host file into the kernel"],
  ["CONFIG_CFG80211_EXTRA_REGDB_KEYDIR", "it reads host files into the kernel"],
  ["CONFIG_UNUSED_KSYMS_WHITELIST", "it reads a host file into the build"],
  ["CONFIG_EVM_X509_PATH", "it names a key file"],
  ["CONFIG_IMA_X509_PATH", "it names a key file"],
]);

/** Kconfig's own defaults of owned options, which name no host file and no init. */
const BENIGN_DEFAULTS = new Set([
  'CONFIG_MODPROBE_PATH="/sbin/modprobe"',
  'CONFIG_MODULE_SIG_KEY="certs/signing_key.pem"',
]);

/**
 * The owned options a resulting .config sets (a --source tree's Kconfig defaults could):
 * checked after olddefconfig, before compiling.
 */
export function ownedInConfig(config: string): string[] {
  const found: string[] = [];
  for (const line of config.split("\n")) {
    const m = /^(CONFIG_\w+)=(.*)$/.exec(line.trim());
    if (m && OWNED_OPTIONS.has(m[1]!) && !OFF.has(m[2]!) && !BENIGN_DEFAULTS.has(line.trim()))
      found.push(line.trim());
  }
  return found;
}

/** What a fragment may say about an owned option: off, or empty (tinyconfig's own value). */
const OFF = new Set(["n", '""']);

/** Larger than any real fragment (a whole .config is about 100 KiB): a bound on what is read. */
export const MAX_FRAGMENT_BYTES = 1 << 20;

export interface FragmentSetting {
  name: string;
  /** "n" for `# CONFIG_X is not set`. */
  value: string;
  line: number;
}

/**
 * Checks a fragment's text; returns its settings. `file` is for messages only. Throws a
 * UserError `FILE:LINE: CONFIG_X ...` for the first refused line.
 */
export function checkFragment(file: string, text: string, arch: Arch): FragmentSetting[] {
  const locked = lockedOptions(arch);
  const out: FragmentSetting[] = [];
  const lines = text.split("\n");
  for (const [i, raw] of lines.entries()) {
    const at = `--config-fragment ${file}:${i + 1}`;
    const line = raw.trim();
    if (line === "") continue;
    let name: string;
    let value: string;
    const set = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line);
    const unset = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/.exec(line);
    if (set) [name, value] = [set[1]!, set[2]!];
    else if (unset) [name, value] = [unset[1]!, "n"];
    else if (line.startsWith("#")) continue;
    else throw new UserError(`${at}: not a kconfig line (CONFIG_NAME=value or # CONFIG_NAME is not set)`);
    if (!/^(y|m|n|-?\d+|0x[0-9a-fA-F]+|"([^"\\]|\\.)*")$/.test(value))
      throw new UserError(
        `${at}: ${name}: value ${JSON.stringify(value)} is not y, m, n, a number or a quoted string`,
      );
    const owned = OWNED_OPTIONS.get(name);
    if (owned && !OFF.has(value)) throw new UserError(`${at}: ${name} is slimroot's to set (${owned})`);
    if (value.startsWith('"') && /[/$`]/.test(value))
      throw new UserError(
        `${at}: ${name}: a path or make expansion in a value (${value}) could read host files into the kernel`,
      );
    const need = locked.get(name);
    if (need && value !== "y") throw new UserError(`${at}: ${name}=y is required by ${need}; it stays on`);
    out.push({ name, value, line: i + 1 });
  }
  if (out.length === 0) throw new UserError(`--config-fragment ${file}: no CONFIG_ lines in it`);
  return out;
}

/** Reads a fragment: a regular file, bounded in size (a FIFO or /dev/zero is refused). */
export async function readFragment(file: string): Promise<string> {
  const what = `--config-fragment ${file}`;
  const st = await statInput(file, what);
  if (st.size > MAX_FRAGMENT_BYTES)
    throw new UserError(`${what}: ${st.size} bytes; a fragment is at most ${MAX_FRAGMENT_BYTES}`);
  return readInputText(file, what, { ...limitsFromEnv(), read: MAX_FRAGMENT_BYTES });
}
