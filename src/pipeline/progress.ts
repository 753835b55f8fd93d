import type { Hash } from "node:crypto";
import { Transform } from "node:stream";

export { contentBytes } from "../tree/tree.js";

/**
 * Passes bytes through, reporting the running count (capped at `total`) a few times a second.
 * Counters that share `shared` (one stream each, e.g. the parts of build --layers) add up to one
 * count, and leave the final report to their caller.
 */
export function progressCounter(
  total: number,
  report: (p: { done: number; total: number }) => void,
  shared?: { done: number; last: number },
): Transform {
  const s = shared ?? { done: 0, last: 0 };
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      s.done += chunk.length;
      const now = Date.now();
      if (now - s.last > 100) {
        s.last = now;
        report({ done: Math.min(s.done, total), total });
      }
      cb(null, chunk);
    },
    flush(cb) {
      if (!shared) report({ done: total, total });
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
