import { EnvironmentError, oneLine, UserError } from "../util/errors.js";
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
      ...(o.memMiB !== undefined ? { memMiB: o.memMiB } : {}),
      trace: false,
      readyTimeoutMs: o.readyTimeoutMs ?? 120_000,
      settleMs: 0,
      stopGraceMs: 10_000,
      // A disk image must come out as built: an ext4 root boots under an overlay too.
      readOnly: true,
      ...(o.echo ? { echo: o.echo } : {}),
    });
  } catch (err) {
    if (err instanceof ProbeFailure)
      throw new ProbeFailure(`verification failed, output not written: ${err.message}`);
    // No kernel, no QEMU, a VM that died: say what was being done, and the way around it.
    const why = `cannot verify the image (output not written; --no-verify skips this): ${oneLine(err)}`;
    if (err instanceof UserError) throw new UserError(why);
    throw new EnvironmentError(why);
  }
}
