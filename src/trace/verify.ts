import { type Probe, ProbeFailure } from "./probe.js";
import { probeSession } from "./session.js";

export interface VerifyOptions {
  kernel?: string;
  probes: readonly Probe[];
  memMiB?: number;
  readyTimeoutMs?: number;
  echo?: NodeJS.WritableStream;
}

/**
 * Boots a built image and runs the probes against it, as `slimroot trace` did against the
 * whole image; a failing probe throws a one-line error naming it.
 */
export async function verifyImage(image: string, o: VerifyOptions): Promise<void> {
  try {
    await probeSession({
      image,
      ...(o.kernel ? { kernel: o.kernel } : {}),
      probes: o.probes,
      memMiB: o.memMiB ?? 512,
      trace: false,
      readyTimeoutMs: o.readyTimeoutMs ?? 120_000,
      settleMs: 0,
      stopGraceMs: 10_000,
      ...(o.echo ? { echo: o.echo } : {}),
    });
  } catch (err) {
    if (err instanceof ProbeFailure)
      throw new ProbeFailure(`verification failed, output not written: ${err.message}`);
    throw err;
  }
}
