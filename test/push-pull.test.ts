/**
 * slimroot push and pull against Debian's real docker-registry on 127.0.0.1: images built by
 * the CLI (an initramfs for amd64 and arm64, an ext4 disk) pushed in slimroot's form
 * (docs/push.md), read back with skopeo (an independent OCI client) and the registry's own
 * blob API, and pulled back byte for byte; one busybox image booted straight from the registry.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { digestOf } from "../src/image/digest.js";
import { RegistrySession } from "../src/image/registry/session.js";
import { fetchedKernelDir, readManifest as readKernelManifest } from "../src/kernel/manifest.js";
import { appBuilder, busyboxScriptImage } from "./support/app-build.js";
import { runCli } from "./support/cli.js";
import {
  forwardingProxy,
  makeLayer,
  pushTestImage,
  type RegistryServer,
  startRegistry,
} from "./support/registry-server.js";

let work: string;
let registry: RegistryServer;
const files = { cpio: "", arm: "", ext4: "" };

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-push-"));
  const build = await appBuilder(work);
  files.cpio = await build("app.cpio.gz", []);
  files.arm = await build("app.arm64.cpio.zst", ["--platform", "linux/arm64", "--compress", "zstd"]);
  files.ext4 = await build("app.ext4", ["--format", "ext4", "--size", "8M"]);
  registry = await startRegistry();
});
after(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

const cli = (args: string[], env: Record<string, string> = {}) =>
  runCli(args, { SLIMROOT_CACHE: join(work, "cache"), ...env });

async function push(args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await cli(["push", "--insecure", ...args], env);
  assert.equal(r.code, 0, r.stderr);
  const digest = r.stdout.trim();
  assert.match(digest, /^sha256:[0-9a-f]{64}$/);
  return digest;
}

// biome-ignore lint/suspicious/noExplicitAny: JSON read back from the registry, checked field by field
type Json = any;

/** The manifest as skopeo reads it (raw, as stored). */
function skopeoRaw(ref: string): { text: string; doc: Json } {
  const text = execFileSync("skopeo", ["inspect", "--raw", "--tls-verify=false", ref], { encoding: "utf8" });
  return { text, doc: JSON.parse(text) };
}

async function blobJson(repo: string, digest: string): Promise<Json> {
  const res = await fetch(`${registry.url}/v2/${repo}/blobs/${digest}`);
  assert.equal(res.status, 200);
  return JSON.parse(await res.text());
}

test("push an initramfs: an OCI manifest with slimroot's artifactType, config and one layer, as skopeo reads it", async () => {
  const ref = `docker://${registry.host}/app:1`;
  const digest = await push([files.cpio, ref]);
  const { text, doc } = skopeoRaw(ref);
  assert.equal(digestOf(text), digest, "the digest push printed is the stored manifest's");
  assert.equal(doc.mediaType, "application/vnd.oci.image.manifest.v1+json");
  assert.equal(doc.artifactType, "application/vnd.slimroot.image.v1");
  assert.equal(doc.config.mediaType, "application/vnd.slimroot.config.v1+json");
  assert.equal(doc.layers.length, 1);
  const bytes = await readFile(files.cpio);
  assert.deepEqual(doc.layers[0], {
    mediaType: "application/vnd.slimroot.initramfs.v1+gzip",
    digest: digestOf(bytes),
    size: bytes.length,
    annotations: { "org.opencontainers.image.title": "app.cpio.gz" },
  });
  assert.deepEqual(doc.annotations, {
    "org.opencontainers.image.created": "1970-01-01T00:00:00Z",
    "org.opencontainers.image.title": "app.cpio.gz",
  });
  const config = await blobJson("app", doc.config.digest);
  assert.equal(config.architecture, "amd64");
  assert.equal(config.os, "linux");
  assert.equal(config.format, "initramfs");
  assert.equal(config.compression, "gzip");
  assert.deepEqual(config.app.args, ["/usr/bin/app"]);
  assert.equal(config.why.format, "cpio", "the .why header beside the file travels in the config");
  assert.equal(`sha256:${config.why.imageSha256}`, digestOf(bytes));
  const needs = config.kernelNeeds.flatMap((n: { options: string[] }) => n.options);
  assert.ok(needs.includes("CONFIG_BLK_DEV_INITRD") && needs.includes("CONFIG_RD_GZIP"));
  assert.ok(!needs.includes("CONFIG_EXT4_FS"), "no disk format's needs for an initramfs");
});

test("push an ext4 disk: its own layer media type and the format's kernel needs", async () => {
  const ref = `docker://${registry.host}/disk:1`;
  await push([files.ext4, ref]);
  const { doc } = skopeoRaw(ref);
  assert.equal(doc.artifactType, "application/vnd.slimroot.image.v1");
  assert.equal(doc.layers[0].mediaType, "application/vnd.slimroot.ext4.v1");
  assert.equal(doc.annotations["org.opencontainers.image.title"], "app.ext4");
  const config = await blobJson("disk", doc.config.digest);
  assert.equal(config.format, "ext4");
  assert.equal(config.architecture, "amd64");
  const needs = config.kernelNeeds.flatMap((n: { options: string[] }) => n.options);
  assert.ok(needs.includes("CONFIG_EXT4_FS") && needs.includes("CONFIG_VIRTIO_BLK"));
  assert.ok(!needs.includes("CONFIG_EROFS_FS"));
});

test("the same input pushed twice gives the same manifest digest; SOURCE_DATE_EPOCH sets created", async () => {
  const ref = `docker://${registry.host}/again:1`;
  const first = await push([files.cpio, ref]);
  const second = await push([files.cpio, `docker://${registry.host}/again:2`]);
  assert.equal(second, first);
  const dated = await push([files.cpio, `docker://${registry.host}/again:3`], {
    SOURCE_DATE_EPOCH: "1700000000",
  });
  assert.notEqual(dated, first);
  const { doc } = skopeoRaw(`docker://${registry.host}/again:3`);
  assert.equal(doc.annotations["org.opencontainers.image.created"], "2023-11-14T22:13:20Z");
});

test("pull gives back the pushed bytes, verified, and the second pull comes from the cache", async () => {
  for (const [file, repo] of [
    [files.cpio, "pulled-cpio"],
    [files.ext4, "pulled-disk"],
  ] as const) {
    const ref = `docker://${registry.host}/${repo}:1`;
    const digest = await push([file, ref]);
    const out = join(work, `${repo}.out`);
    const r = await cli(["pull", "--insecure", ref, "-o", out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), digest);
    assert.ok((await readFile(out)).equals(await readFile(file)), `${repo}: byte-identical`);
  }
  const cached = await readdir(join(work, "cache/blobs/sha256"));
  assert.ok(cached.includes(digestOf(await readFile(files.cpio)).slice(7)), "the layer is in the blob cache");
  // With the registry's copy of the blob gone, a pull still succeeds: from the cache.
  await rm(join(registry.storageDir, "docker/registry/v2/repositories/pulled-cpio/_layers"), {
    recursive: true,
    force: true,
  });
  const again = join(work, "again.out");
  const r = await cli(["pull", "--insecure", `docker://${registry.host}/pulled-cpio:1`, "-o", again]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok((await readFile(again)).equals(await readFile(files.cpio)));
});

test("pull -o writes the .why push attached beside the file, over a stale one; pulled, the pair pushes again", async () => {
  const ref = `docker://${registry.host}/with-why:1`;
  await push([files.cpio, ref]);
  // The output and its .why are another build's (a user's earlier file at that path).
  const out = join(work, "with-why.cpio.gz");
  await copyFile(files.ext4, out);
  await copyFile(`${files.ext4}.why`, `${out}.why`);
  const r = await cli(["pull", "--insecure", ref, "-o", out]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok((await readFile(out)).equals(await readFile(files.cpio)), "the file");
  assert.ok(
    (await readFile(`${out}.why`)).equals(await readFile(`${files.cpio}.why`)),
    "its .why, as pushed",
  );
  // The pair is whole again: push takes it (a stale .why is refused in one line).
  await push([out, `docker://${registry.host}/with-why-again:1`]);

  // An image pushed without a .why: the old .why beside the output described the file replaced.
  const bare = join(work, "bare", "app.cpio.gz");
  await mkdir(join(work, "bare"));
  await copyFile(files.cpio, bare);
  const warned = await cli(["push", "--insecure", bare, `docker://${registry.host}/no-why:1`]);
  assert.equal(warned.code, 0, warned.stderr);
  assert.match(
    warned.stderr,
    /^slimroot: warning: .*app\.cpio\.gz: no app\.cpio\.gz\.why beside it: pushed as one layer, with no provenance/m,
    "a file without its .why is pushed, and the user told what it lacks",
  );
  const again = await cli(["pull", "--insecure", `docker://${registry.host}/no-why:1`, "-o", out]);
  assert.equal(again.code, 0, again.stderr);
  assert.ok(!existsSync(`${out}.why`), "no .why beside a file pulled without one");
});

test("several architectures under one tag: an image index; pull picks by --platform", async () => {
  const ref = `docker://${registry.host}/multi:1`;
  const digest = await push([files.cpio, files.arm, ref]);
  const { text, doc } = skopeoRaw(ref);
  assert.equal(digestOf(text), digest);
  assert.equal(doc.mediaType, "application/vnd.oci.image.index.v1+json");
  assert.equal(doc.artifactType, "application/vnd.slimroot.image.v1");
  assert.deepEqual(
    doc.manifests.map((m: { platform: unknown }) => m.platform),
    [
      { architecture: "amd64", os: "linux" },
      { architecture: "arm64", os: "linux" },
    ],
  );
  const arm = skopeoRaw(`docker://${registry.host}/multi@${doc.manifests[1].digest}`).doc;
  assert.equal(arm.layers[0].mediaType, "application/vnd.slimroot.initramfs.v1+zstd");
  const out = join(work, "multi.arm64");
  const r = await cli(["pull", "--insecure", "--platform", "linux/arm64", ref, "-o", out]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok((await readFile(out)).equals(await readFile(files.arm)));
  const none = await cli(["pull", "--insecure", "--platform", "linux/riscv64", ref, "-o", out]);
  assert.equal(none.code, 1);
  assert.match(
    none.stderr,
    /^slimroot: docker:\/\/.*multi:1: no image for platform linux\/riscv64; available: linux\/amd64, linux\/arm64\n$/,
  );
  const twice = await cli([
    "push",
    "--insecure",
    files.cpio,
    files.cpio,
    `docker://${registry.host}/multi:2`,
  ]);
  assert.equal(twice.code, 1);
  assert.match(twice.stderr, /one file per architecture under a tag\n$/);
});

test("plain http to a registry that is not on loopback is refused before anything is sent", async () => {
  const r = await cli(["push", "--insecure", files.cpio, "docker://10.255.0.1:5000/app:1"]);
  assert.equal(r.code, 1);
  assert.equal(
    r.stderr,
    "slimroot: docker://10.255.0.1:5000/app:1: refusing to push over plain http to 10.255.0.1:5000 (--insecure is for a loopback registry only; use https)\n",
  );
});

test("a file that is not an image, and a container image pulled as if it were slimroot's: one line each", async () => {
  const junk = join(work, "notes.txt");
  await writeFile(junk, "just text\n");
  const r = await cli(["push", "--insecure", junk, `docker://${registry.host}/junk:1`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^slimroot: .*notes\.txt: not an image slimroot knows \([^\n]*\)\n$/);
  const tags = await fetch(`${registry.url}/v2/junk/tags/list`);
  assert.equal(tags.status, 404, "nothing was pushed");

  await pushTestImage(registry.url, "container", "1", [await makeLayer({ a: "b" })]);
  const p = await cli([
    "pull",
    "--insecure",
    `docker://${registry.host}/container:1`,
    "-o",
    join(work, "c.out"),
  ]);
  assert.equal(p.code, 1);
  assert.match(p.stderr, /^slimroot: docker:\/\/.*container:1: not a slimroot image [^\n]*\n$/);
});

test("a chunked upload (POST, PATCHes, PUT with the digest) stores the exact bytes", async () => {
  const data = Buffer.alloc(300_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7919) & 0xff;
  const session = await RegistrySession.open(`docker://${registry.host}/chunks:1`, {
    insecure: true,
    push: true,
  });
  const digest = digestOf(data);
  assert.equal(await session.hasBlob(digest), false);
  let sent = 0;
  await session.uploadBlob({ bytes: data }, digest, (n) => (sent += n), 64 * 1024);
  assert.equal(sent, data.length);
  assert.equal(await session.hasBlob(digest), true);
  const back = Buffer.from(await (await fetch(`${registry.url}/v2/chunks/blobs/${digest}`)).arrayBuffer());
  assert.ok(back.equals(data));
  // A blob whose bytes are not its digest is refused by the registry: one line naming the reference.
  await assert.rejects(
    session.uploadBlob({ bytes: data }, digestOf("other"), () => {}, 64 * 1024),
    /^Error: docker:\/\/.*chunks:1: upload of blob sha256:[0-9a-f]+ refused: 400 Bad Request/,
  );
});

test("run docker://...: pulls the image and boots it; the app's exit status, nothing left in TMPDIR", async () => {
  const image = await busyboxScriptImage(work, "bb.cpio.gz", "echo from the registry; exit 3");
  const ref = `docker://${registry.host}/busybox-vm:1`;
  await push([image, ref]);
  const tmp = join(work, "tmp");
  await mkdir(tmp);
  // The real cache (not the test's): run boots the kernel fetched there.
  const r = await runCli(["run", "--insecure", ref], { TMPDIR: tmp });
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stdout, /^from the registry$/m);
  const left = (await readdir(tmp)).filter((n) => n.startsWith("slimroot-"));
  assert.deepEqual(left, [], "the pulled copy is removed");
  const bad = await runCli(["run", "--insecure", `docker://${registry.host}/busybox-vm:nope`], {
    TMPDIR: tmp,
  });
  assert.equal(bad.code, 125);
  assert.match(
    bad.stderr,
    /^slimroot: docker:\/\/.*busybox-vm:nope: cannot fetch manifest nope: 404 Not Found[^\n]*\n$/,
  );
});

test("a push whose connection keeps dropping fails in one line and leaves the tag as it was; one drop is retried", async () => {
  const ref = (host: string) => `docker://${host}/interrupted:1`;
  const before = await push([files.cpio, ref(registry.host)]);
  // A proxy in front of the real registry that drops the ext4 blob's upload PUT `drops` times.
  const ext4Digest = digestOf(await readFile(files.ext4));
  let drops = 5;
  let puts = 0;
  const proxy = await forwardingProxy(registry, (req) => {
    const ext4Put = req.method === "PUT" && req.url?.includes(`digest=${encodeURIComponent(ext4Digest)}`);
    if (ext4Put) puts++;
    if (ext4Put && drops > 0) {
      drops--;
      req.socket.destroy();
      return true;
    }
    return false;
  });
  try {
    const r = await cli(["push", "--insecure", files.ext4, ref(proxy.host)]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.split("\n").filter(Boolean).length, 1, r.stderr);
    assert.match(r.stderr, /^slimroot: docker:\/\/.*interrupted:1: /);
    assert.equal(puts, 5, "the PUT was tried five times (backoff 0.25, 0.5, 1, 2 s)");
    assert.equal(digestOf(skopeoRaw(ref(registry.host)).text), before, "the tag is unchanged");
    drops = 1;
    const again = await push([files.ext4, ref(proxy.host)]);
    assert.equal(puts, 7, "the dropped PUT was sent again");
    assert.notEqual(again, before);
    assert.equal(digestOf(skopeoRaw(ref(registry.host)).text), again);
  } finally {
    await proxy.close();
  }
});

test("a kernel and an erofs image: their media types; erofs, whose /init the host cannot read, takes --platform", async (t) => {
  const erofs = join(work, "app.erofs");
  const b = await runCli([
    "build",
    `dir:${join(work, "root")}`,
    "--entrypoint",
    "/usr/bin/app",
    "--format",
    "erofs",
    "-o",
    erofs,
  ]);
  assert.equal(b.code, 0, b.stderr);
  const ref = `docker://${registry.host}/erofs:1`;
  const refused = await cli(["push", "--insecure", erofs, ref]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^slimroot: [^\n]*; say it with --platform linux\/ARCH\n$/);
  await push(["--platform", "linux/amd64", erofs, ref]);
  const { doc } = skopeoRaw(ref);
  assert.equal(doc.layers[0].mediaType, "application/vnd.slimroot.erofs.v1");
  const config = await blobJson("erofs", doc.config.digest);
  assert.equal(config.architecture, "amd64");
  assert.ok(config.kernelNeeds.some((n: { options: string[] }) => n.options.includes("CONFIG_EROFS_FS")));

  const dir = fetchedKernelDir("amd64");
  if (!existsSync(join(dir, "manifest.json")))
    return t.skip(`${dir}: no fetched kernel (slimroot kernel fetch)`);
  const kernel = join(dir, (await readKernelManifest(dir)).kernel);
  const kref = `docker://${registry.host}/kernel:1`;
  await push([kernel, kref]);
  const k = skopeoRaw(kref).doc;
  assert.equal(k.layers[0].mediaType, "application/vnd.slimroot.kernel.v1");
  const kc = await blobJson("kernel", k.config.digest);
  assert.equal(kc.format, "kernel");
  assert.equal(kc.kernelFormat, "bzImage");
  assert.equal(kc.embedded, false);
  assert.deepEqual(kc.kernelNeeds, []);
  const out = join(work, "kernel.out");
  const r = await cli(["pull", "--insecure", kref, "-o", out]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok((await readFile(out)).equals(await readFile(kernel)));
});
