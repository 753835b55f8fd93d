/**
 * Pulls one image in a child process, for tests that need a fresh Node (NODE_EXTRA_CA_CERTS
 * is read at start-up) or a process to kill: `node --import tsx pull-child.ts REF [--insecure]`.
 * The cache is $SLIMROOT_TEST_CACHE. Prints the manifest digest and each layer's files, or the error's one line.
 */
import { pullImage } from "../../src/image/registry/client.js";
import { exitCodeOf, oneLine } from "../../src/util/errors.js";

const [ref, ...flags] = process.argv.slice(2);
try {
  const image = await pullImage(ref!, {
    insecure: flags.includes("--insecure"),
    platform: { os: "linux", architecture: "amd64" },
    cacheDir: process.env.SLIMROOT_TEST_CACHE!,
  });
  process.stdout.write(`${JSON.stringify({ digest: image.digest, layers: image.layers.length })}\n`);
} catch (err) {
  process.stderr.write(`${oneLine(err)}\n`);
  process.exitCode = exitCodeOf(err);
}
