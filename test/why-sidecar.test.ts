// Issue 17 item 5: IMAGE.why cannot be forged by a name in the image, and a reader uses it
// only for the image it was written with.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { runCli } from "./support/cli.js";
import { debianKernel } from "./support/kernel.js";
import { tarOf } from "./support/layers.js";

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-why-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const ZERO = "0".repeat(64);
/** Names that wrote header lines and fake reasons into a v1 .why. */
const FORGERS = [
  `etc/a\n# compressor: forged\n# cpio sha256: ${ZERO}`,
  "etc/b\n/bin/app\tforged reason",
  "etc/c\tnot the reason",
];

async function buildImage(name: string, extra: { name: string; body: string }[] = []): Promise<string> {
  const tarFile = join(work, `${name}.tar`);
  await writeFile(
    tarFile,
    await tarOf([
      { name: "bin/app", body: "#!/bin/sh\n", mode: 0o755 },
      ...FORGERS.map((n) => ({ name: n, body: "x" })),
      ...extra,
    ]),
  );
  const image = join(work, `${name}.cpio.gz`);
  const b = await runCli([
    "build",
    `tar:${tarFile}`,
    "--entrypoint",
    "/bin/app",
    "--minimize",
    "none",
    "-o",
    image,
  ]);
  assert.equal(b.code, 0, b.stderr);
  return image;
}

test("names with newlines and tabs cannot forge IMAGE.why's header or reasons", async () => {
  const image = await buildImage("forge");
  const info = JSON.parse((await runCli(["inspect", "--json", "--why", image])).stdout);
  assert.equal(info.build.cpioSha256, sha256(gunzipSync(await readFile(image))));
  assert.match(info.build.compressor, /^gzip level 6 .*zlib/);
  const why = new Map<string, string>(
    info.entries.map((e: { path: string; why: string }) => [e.path, e.why]),
  );
  assert.equal(why.get("bin/app"), "image (--minimize none)");
  for (const n of FORGERS) assert.equal(why.get(n), "image (--minimize none)", JSON.stringify(n));
  // The .why is JSON lines: a header, then one object per path, the names as they are.
  const lines = (await readFile(`${image}.why`, "utf8")).trimEnd().split("\n");
  const head = JSON.parse(lines[0]!);
  assert.deepEqual([head.type, head.version, head.format], ["slimroot.why", 2, "cpio"]);
  assert.equal(head.imageSha256, sha256(await readFile(image)));
  const paths = new Set(lines.slice(1).map((l) => JSON.parse(l).path));
  for (const n of FORGERS) assert.ok(paths.has(`/${n}`), JSON.stringify(n));
});

test("a .why written for another image is refused by inspect --why and ignored otherwise, in one line", async () => {
  const image = await buildImage("stale");
  const other = await buildImage("other", [{ name: "etc/more", body: "y" }]);
  // The other build's .why beside this image, as a stale copy would be.
  await copyFile(`${other}.why`, `${image}.why`);
  const strict = await runCli(["inspect", "--why", image]);
  assert.equal(strict.code, 1, strict.stderr);
  assert.equal(strict.stdout, "");
  assert.match(
    strict.stderr,
    /^slimroot: .*stale\.cpio\.gz\.why: written for another image \(sha256 [0-9a-f]{12}\.\.\., .*stale\.cpio\.gz is [0-9a-f]{12}\.\.\.\)\n$/,
  );
  const loose = await runCli(["inspect", "--json", image]);
  assert.equal(loose.code, 0, loose.stderr);
  assert.match(loose.stderr, /^slimroot: .*\.why: written for another image .*; ignored\n$/);
  assert.equal(JSON.parse(loose.stdout).build, undefined, "no build record from another image");
  // A forged header line (as v1's names wrote) is no .why at all.
  await writeFile(
    `${image}.why`,
    `# slimroot why v1: image path, tab, why it is in\n# cpio sha256: ${ZERO}\n/\tx\n`,
  );
  const old = await runCli(["inspect", "--json", image]);
  assert.equal(old.code, 0, old.stderr);
  assert.match(old.stderr, /not a slimroot\.why version 2 file .*; ignored\n$/);
  assert.equal(JSON.parse(old.stdout).build, undefined);
});

test("a name that is not UTF-8 keeps its reason: stored as its bytes, matched byte for byte", async () => {
  const root = join(work, "latin1");
  await mkdir(join(root, "bin"), { recursive: true });
  await writeFile(join(root, "bin", "app"), "#!/bin/sh\n", { mode: 0o755 });
  // caf\xe8 and caf\xe9: two names that a lossy decoding would make one.
  for (const b of [0xe8, 0xe9])
    await writeFile(Buffer.concat([Buffer.from(`${root}/caf`), Buffer.of(b)]), String(b));
  const image = join(work, "latin1.cpio");
  const b = await runCli([
    "build",
    `dir:${root}`,
    "--entrypoint",
    "/bin/app",
    "--minimize",
    "none",
    "-o",
    image,
  ]);
  assert.equal(b.code, 0, b.stderr);
  const lines = (await readFile(`${image}.why`, "utf8"))
    .trimEnd()
    .split("\n")
    .slice(1)
    .map((l) => JSON.parse(l));
  const stored = lines
    .filter((l) => l.pathBase64)
    .map((l) => Buffer.from(l.pathBase64, "base64").toString("latin1"));
  assert.deepEqual(stored.sort(), ["/caf\xe8", "/caf\xe9"]);
  const info = JSON.parse((await runCli(["inspect", "--json", "--why", image])).stdout);
  const odd = info.entries.filter((e: { path: string }) => e.path.startsWith("caf"));
  assert.deepEqual(odd.map((e: { path: string; why: string }) => [e.path, e.why]).sort(), [
    ["caf\udce8", "image (--minimize none)"],
    ["caf\udce9", "image (--minimize none)"],
  ]);
});

test("run sizes memory by the footprint an image's .why records, only when the .why is that image's", async () => {
  const { kernel } = await debianKernel("amd64");
  const image = await buildImage("footprint", [{ name: "big", body: "z".repeat(3 << 20) }]);
  const why = await readFile(`${image}.why`, "utf8");
  const header = JSON.parse(why.slice(0, why.indexOf("\n"))) as { footprint: { tmpfsBytes: number } };
  const filesMiB = async () => {
    const r = await runCli(["run", image, "--kernel", kernel, "--dry-run", "-o", join(work, "fp-dry")]);
    await rm(join(work, "fp-dry"), { recursive: true, force: true });
    assert.equal(r.code, 0, r.stderr);
    return Number(/\((\d+) MiB of files unpacked into RAM/.exec(r.stderr)?.[1]);
  };
  // The build counted the 3 MiB file as it wrote it; reading the archive gives the same.
  assert.ok(header.footprint.tmpfsBytes >= 3 << 20, why.slice(0, 400));
  assert.equal(await filesMiB(), 4);
  // Taken from the .why without reading the image: a changed record shows in the plan.
  const said = { ...header, footprint: { ...header.footprint, tmpfsBytes: 100 << 20 } };
  await writeFile(`${image}.why`, why.replace(/^.*\n/, `${JSON.stringify(said)}\n`));
  assert.equal(await filesMiB(), 100);
  // Another image's .why is no shortcut: the archive is read.
  await copyFile(`${await buildImage("footprint-other")}.why`, `${image}.why`);
  assert.equal(await filesMiB(), 4);
});
