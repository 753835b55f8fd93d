/**
 * Ready after a resume against a cold boot of the same image, in one run (issue 18 item 3):
 * `node --import tsx scripts/snapshot-measure.ts IMAGE.cpio.gz APP.snap GUESTPORT [ROUNDS [RUN-OPTIONS...]]`
 * (RUN-OPTIONS: what the snapshot was made with, e.g. `--kernel DIR`, for the cold boots).
 * Each round boots IMAGE with `slimroot run -p` and resumes APP.snap the same way, one after
 * the other, and times from spawning the CLI to the first answer on the forwarded port
 * (a connection that brings data within 200 ms; attempts every 20 ms). Medians on stdout, as JSON.
 */
import { spawn } from "node:child_process";
import { connect } from "node:net";
import { join } from "node:path";
import { freePort } from "../src/util/net.js";

const [image, snap, guest, rounds = "3", ...coldArgs] = process.argv.slice(2);
if (!image || !snap || !guest)
  throw new Error("usage: snapshot-measure.ts IMAGE APP.snap GUESTPORT [ROUNDS]");
const MAIN = join(import.meta.dirname, "..", "dist", "cli", "main.js");

const answers = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, "127.0.0.1");
    // Short attempts: a connection QEMU's user network accepted while the guest was not yet
    // running waits for slirp's retransmission (seconds); a fresh one is what a client sees.
    s.setTimeout(200, () => s.destroy());
    s.once("data", () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
    s.on("close", () => resolve(false));
  });

async function readySeconds(file: string, extra: string[] = []): Promise<number> {
  const port = await freePort();
  const t0 = performance.now();
  const child = spawn(process.execPath, [MAIN, "run", file, ...extra, "-p", `127.0.0.1:${port}:${guest}`], {
    stdio: "ignore",
  });
  try {
    for (;;) {
      if (await answers(port)) return (performance.now() - t0) / 1000;
      if (performance.now() - t0 > 120_000) throw new Error(`${file}: no answer in 120 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => child.once("close", r));
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const cold: number[] = [];
const resumed: number[] = [];
for (let i = 0; i < Number(rounds); i++) {
  cold.push(await readySeconds(image, coldArgs));
  resumed.push(await readySeconds(snap));
}
const c = median(cold);
const r = median(resumed);
console.log(
  JSON.stringify({ cold, resumed, coldMedian: c, resumedMedian: r, ratio: Math.round((r / c) * 100) / 100 }),
);
