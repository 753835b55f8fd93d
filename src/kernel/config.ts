/** A kernel's build configuration (the `config-RELEASE` Debian ships beside `vmlinuz-RELEASE`). */
import { readInputText } from "../util/input-file.js";

/** CONFIG_NAME (without the prefix) -> its value: "y", "m", a number or a quoted string. */
export type KernelConfig = ReadonlyMap<string, string>;

export function parseKernelConfig(text: string): KernelConfig {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^CONFIG_(\w+)=(.*)$/.exec(line.trim());
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

export async function readKernelConfig(path: string): Promise<KernelConfig> {
  return parseKernelConfig(await readInputText(path, `${path} (the kernel config)`));
}

/** "y" or "m" when the option is on, else undefined. */
export function configured(c: KernelConfig, name: string): "y" | "m" | undefined {
  const v = c.get(name);
  return v === "y" || v === "m" ? v : undefined;
}
