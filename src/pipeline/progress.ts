import type { Hash } from "node:crypto";
import { Transform } from "node:stream";

export { contentBytes } from "../tree/tree.js";

/** Passes bytes through, reporting the running count (capped at `total`) a few times a second. */
export function progressCounter(
  total: number,
  report: (p: { done: number; total: number }) => void,
): Transform {
  let done = 0;
  let last = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      done += chunk.length;
      const now = Date.now();
      if (now - last > 100) {
        last = now;
        report({ done: Math.min(done, total), total });
      }
      cb(null, chunk);
    },
    flush(cb) {
      report({ done: total, total });
      cb();
    },
  });
}

/** Passes bytes through into `hash`. */
export function hashTap(hash: Hash): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
}
