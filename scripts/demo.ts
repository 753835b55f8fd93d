// `make demo`: the main job end to end on a built-in default. Builds a Debian nginx image (from
// Debian packages, no Docker), fetches Debian's cloud kernel, builds a minimal initramfs with
// slimroot, boots it on QEMU, fetches the welcome page through a forwarded port, stops it.
import { spawn, spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "../src/util/net.js";
import { REPO } from "../test/support/cli.js";
import { nginxFixture } from "../test/support/fixtures.js";

const cli = join(REPO, "dist", "cli", "main.js");
const outDir = join(REPO, "demo-out");

function step(text: string) {
  process.stdout.write(`\n==> ${text}\n`);
}

function slimroot(args: string[]): string {
  process.stdout.write(`$ slimroot ${args.join(" ")}\n`);
  const r = spawnSync(process.execPath, [cli, ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  process.stdout.write(r.stdout);
  if (r.status !== 0) throw new Error(`slimroot ${args[0]} failed (exit ${r.status})`);
  return r.stdout.trim();
}

step("building a Debian nginx image from Debian packages (mmdebstrap + umoci; cached after the first run)");
const nginx = await nginxFixture();
process.stdout.write(`${nginx.ociRef}\n`);

step("fetching Debian's cloud kernel");
const kernel = slimroot(["kernel", "fetch", "--arch", "amd64"]).split("\n").pop()!;

step("building a minimal initramfs: nginx's ELF closure, /etc, the rules, and the welcome page");
spawnSync("mkdir", ["-p", outDir]);
// gzip: under TCG the guest unpacks it faster than xz.
const image = join(outDir, "nginx.cpio.gz");
slimroot(["build", nginx.ociRef, "--minimize", "static", "--keep", "/var/www/html/**", "-o", image]);
const full = join(outDir, "nginx-full.cpio.gz");
slimroot(["build", nginx.ociRef, "--minimize", "none", "-o", full]);
process.stdout.write(
  `minimal: ${(statSync(image).size / 1e6).toFixed(2)} MB gzip, whole image: ${(statSync(full).size / 1e6).toFixed(2)} MB gzip\n`,
);

step("booting it on QEMU and fetching http://127.0.0.1:PORT/");
const port = await freePort();
const started = Date.now();
const vm = spawn(process.execPath, [cli, "run", image, "--kernel", kernel, "-p", `${port}:80`], {
  stdio: ["ignore", "inherit", "inherit"],
});
const exited = new Promise<number>((resolve) => vm.on("close", (code) => resolve(code ?? -1)));
let page = "";
for (let i = 0; i < 300 && !page; i++) {
  await sleep(100);
  const r = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) }).catch(
    () => undefined,
  );
  if (r?.ok) page = await r.text();
}
if (!page) {
  vm.kill("SIGKILL");
  throw new Error("nginx did not answer within 30 s");
}
const title = /<title>(.*)<\/title>/.exec(page)?.[1] ?? page.slice(0, 60);
process.stdout.write(`\nHTTP 200 after ${((Date.now() - started) / 1000).toFixed(1)} s: "${title}"\n`);

step("stopping it (SIGTERM to slimroot run: the app gets SIGTERM, the VM ends)");
vm.kill("SIGTERM");
const code = await exited;
process.stdout.write(`slimroot run exited ${code}\n`);
process.exitCode = code === 0 ? 0 : 1;
