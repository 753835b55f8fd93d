import { readdir, readFile } from "node:fs/promises";

/** PIDs of QEMU processes whose command line mentions `marker` (a test's work directory). */
export async function qemusUsing(marker: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmd = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmd.startsWith("qemu-system") && cmd.includes(marker)) pids.push(Number(entry));
  }
  return pids;
}
