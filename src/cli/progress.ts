import { createRequire } from "node:module";

// Loaded only on a terminal: it and its string-width dependencies are a sixth of the CLI's start.
const require = createRequire(import.meta.url);

/** A byte-progress bar on a terminal, nothing otherwise (CI logs stay clean). */
export function byteProgress(label: string): {
  update(p: { done: number; total: number }): void;
  stop(): void;
} {
  if (!process.stdout.isTTY) return { update: () => undefined, stop: () => undefined };
  const cliProgress: typeof import("cli-progress") = require("cli-progress");
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% {doneMB}/{totalMB} MB`,
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  const mb = (n: number) => (n / 1e6).toFixed(1);
  return {
    update({ done, total }) {
      if (!started) {
        bar.start(total, done, { doneMB: mb(done), totalMB: mb(total) });
        started = true;
      }
      bar.setTotal(total);
      bar.update(done, { doneMB: mb(done), totalMB: mb(total) });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

/** One status line rewritten in place on a terminal. */
export function statusLine(text: string): void {
  if (process.stdout.isTTY) process.stdout.write(`\r\x1b[K${text}`);
}

export function clearStatus(): void {
  if (process.stdout.isTTY) process.stdout.write("\r\x1b[K");
}
