/**
 * push --as urunc|flintlock|containerdisk and the .why referrer, against Debian's real
 * docker-registry on 127.0.0.1, read back with tools that are not slimroot's: skopeo (the
 * manifest and config as stored, a copy to an OCI layout), umoci (the layout unpacked as a
 * runtime would), tar (owners and modes in the layer), jq. The names checked are the ones each
 * consumer reads (src/publish/urunc.ts, flintlock.ts, containerdisk.ts quote where from).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { digestOf } from "../src/image/digest.js";
import { fetchedKernelDir, readManifest as readKernelManifest } from "../src/kernel/manifest.js";
import { appBuilder, busyboxScriptImage } from "./support/app-build.js";
import { runCli } from "./support/cli.js";
import { slimrootKernel } from "./support/kernel.js";
import { forwardingProxy, type RegistryServer, startRegistry } from "./support/registry-server.js";

let work: string;
let registry: RegistryServer;
const files = { cpio: "", ext4: "", erofs: "" };
/** The fetched Debian kernel (a bzImage), when `slimroot kernel fetch` has run. */
let kernel: string | undefined;

before(async () => {
  work = await mkdtemp(join(tmpdir(), "slimroot-forms-"));
  const build = await appBuilder(work);
  files.cpio = await build("app.cpio.gz", []);
  files.ext4 = await build("app.ext4", ["--format", "ext4", "--size", "8M"]);
  files.erofs = await build("app.erofs", ["--format", "erofs"]);
  const dir = fetchedKernelDir("amd64");
  if (existsSync(join(dir, "manifest.json"))) kernel = join(dir, (await readKernelManifest(dir)).kernel);
  registry = await startRegistry();
});
after(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

const cli = (args: string[]) => runCli(args, { SLIMROOT_CACHE: join(work, "cache") });
const NO_KERNEL = "no fetched kernel (slimroot kernel fetch)";

/** push --insecure ...; the `DIGEST TAG` lines it prints, as a map tag -> digest. */
async function push(args: string[]): Promise<Map<string, string>> {
  const r = await cli(["push", "--insecure", ...args]);
  assert.equal(r.code, 0, r.stderr);
  const out = new Map<string, string>();
  for (const line of r.stdout.trim().split("\n")) {
    const [digest, tag] = line.split(" ");
    assert.match(digest!, /^sha256:[0-9a-f]{64}$/);
    out.set(tag!, digest!);
  }
  return out;
}

// biome-ignore lint/suspicious/noExplicitAny: JSON read back by other tools, checked field by field
type Json = any;

const skopeo = (args: string[]) => execFileSync("skopeo", args, { encoding: "utf8" });
function raw(ref: string): { text: string; doc: Json } {
  const text = skopeo(["inspect", "--raw", "--tls-verify=false", `docker://${registry.host}/${ref}`]);
  return { text, doc: JSON.parse(text) };
}
const config = (ref: string): Json =>
  JSON.parse(
    skopeo(["inspect", "--config", "--raw", "--tls-verify=false", `docker://${registry.host}/${ref}`]),
  );

/** skopeo copies the image to an OCI layout, umoci unpacks it: the root a runtime would see. */
function unpack(ref: string, name: string): string {
  const layout = join(work, `${name}.oci`);
  skopeo(["copy", "--src-tls-verify=false", `docker://${registry.host}/${ref}`, `oci:${layout}:t`]);
  const bundle = join(work, `${name}.bundle`);
  execFileSync("umoci", ["unpack", "--rootless", "--image", `${layout}:t`, bundle], { stdio: "ignore" });
  return join(bundle, "rootfs");
}

/** `tar -tv --numeric-owner` of each of the image's layers: "mode uid/gid size name" per member. */
async function layerListing(ref: string): Promise<string[][]> {
  const { doc } = raw(ref);
  const out = [];
  for (const layer of doc.layers) {
    assert.equal(layer.mediaType, "application/vnd.oci.image.layer.v1.tar");
    const res = await fetch(`${registry.url}/v2/${ref.split(":")[0]}/blobs/${layer.digest}`);
    const path = join(work, "layer.tar");
    await writeFile(path, Buffer.from(await res.arrayBuffer()));
    const listing = execFileSync("tar", ["-tvf", path, "--numeric-owner"], { encoding: "utf8" });
    out.push(
      listing
        .trim()
        .split("\n")
        .map((l) =>
          l
            .split(/\s+/)
            .filter((_, i) => i !== 3 && i !== 4)
            .join(" "),
        ),
    );
  }
  return out;
}

const same = async (a: string, b: string) => (await readFile(a)).equals(await readFile(b));

test("--as urunc, initramfs: the kernel and initrd in the image, com.urunc.unikernel.* on the manifest, in the config's Labels and in /urunc.json", async (t) => {
  if (!kernel) return t.skip(NO_KERNEL);
  const pushed = await push([
    "--as",
    "slimroot,urunc",
    "--kernel",
    kernel,
    files.cpio,
    `docker://${registry.host}/app:1`,
  ]);
  assert.deepEqual(
    [...pushed.keys()],
    ["1-kernel", "1", "1-urunc"],
    "one tag per form (TAG, TAG-urunc), the kernel slimroot's form names first (TAG-kernel)",
  );
  const { text, doc } = raw("app:1-urunc");
  assert.equal(digestOf(text), pushed.get("1-urunc"));
  assert.equal(doc.mediaType, "application/vnd.oci.image.manifest.v1+json");
  assert.equal(doc.config.mediaType, "application/vnd.oci.image.config.v1+json");
  // urunc's names (pkg/unikontainers/annotations.go): linux guest, qemu, paths inside the rootfs.
  const urunc = {
    "com.urunc.unikernel.unikernelType": "linux",
    "com.urunc.unikernel.hypervisor": "qemu",
    "com.urunc.unikernel.binary": "/boot/vmlinux",
    "com.urunc.unikernel.cmdline": "/init",
    "com.urunc.unikernel.mountRootfs": "false",
    "com.urunc.unikernel.initrd": "/boot/initrd",
  };
  const jqAnnotations = execFileSync(
    "jq",
    ["-c", '.annotations | with_entries(select(.key | startswith("com.urunc.")))'],
    {
      input: text,
      encoding: "utf8",
    },
  );
  assert.deepEqual(JSON.parse(jqAnnotations), urunc);
  const c = config("app:1-urunc");
  assert.equal(c.architecture, "amd64");
  assert.equal(c.os, "linux");
  assert.deepEqual(c.config.Cmd, ["/init"], "urunc boots the process args as init");
  assert.deepEqual(c.config.Labels, urunc);
  const root = unpack("app:1-urunc", "urunc");
  assert.ok(await same(join(root, "boot/vmlinux"), kernel), "the kernel, byte for byte");
  assert.ok(await same(join(root, "boot/initrd"), files.cpio), "the initramfs, byte for byte");
  const json = JSON.parse(await readFile(join(root, "urunc.json"), "utf8"));
  const decoded = Object.fromEntries(
    Object.entries(json).map(([k, v]) => [k, Buffer.from(v as string, "base64").toString()]),
  );
  assert.deepEqual(decoded, { ...urunc, "com.urunc.unikernel.unikernelVersion": "" });
});

test("--as urunc, ext4: block and blkMntPoint; a hypervisor named; refusals in one line with nothing pushed", async (t) => {
  if (!kernel) return t.skip(NO_KERNEL);
  const pushed = await push([
    "--as",
    "urunc",
    "--hypervisor",
    "cloud-hypervisor",
    "--kernel",
    kernel,
    files.ext4,
    `docker://${registry.host}/disk:1`,
  ]);
  assert.deepEqual([...pushed.keys()], ["1-urunc"]);
  const a = raw("disk:1-urunc").doc.annotations;
  assert.equal(a["com.urunc.unikernel.block"], "/boot/rootfs.ext4");
  assert.equal(a["com.urunc.unikernel.blkMntPoint"], "/");
  assert.equal(a["com.urunc.unikernel.hypervisor"], "cloud-hypervisor");
  assert.equal(a["com.urunc.unikernel.initrd"], undefined);
  // A layer per file: the kernel's is the same blob whichever form or app carries it.
  assert.deepEqual(await layerListing("disk:1-urunc"), [
    ["drwxr-xr-x 0/0 0 boot/", `-rw-r--r-- 0/0 ${(await readFile(kernel)).length} boot/vmlinux`],
    ["drwxr-xr-x 0/0 0 boot/", `-rw-r--r-- 0/0 ${(await readFile(files.ext4)).length} boot/rootfs.ext4`],
    [
      `-rw-r--r-- 0/0 ${(await readFile(join(unpack("disk:1-urunc", "disk"), "urunc.json"))).length} urunc.json`,
    ],
  ]);

  const refused = async (args: string[], line: RegExp, repo: string) => {
    const r = await cli(["push", "--insecure", ...args, `docker://${registry.host}/${repo}:1`]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, line);
    assert.equal(r.stderr.split("\n").filter(Boolean).length, 1, r.stderr);
    assert.equal((await fetch(`${registry.url}/v2/${repo}/tags/list`)).status, 404, "nothing was pushed");
  };
  await refused(
    ["--as", "urunc", files.cpio],
    /: --as urunc puts the kernel in the image; give it with --kernel FILE\n$/,
    "nokernel",
  );
  await refused(
    ["--as", "urunc", "--kernel", kernel, "--platform", "linux/amd64", files.erofs],
    /app\.erofs: a erofs image; urunc's linux guest mounts ext2\/3\/4 only/,
    "erofs",
  );
  await refused(
    ["--as", "urunc", "--hypervisor", "firecracker", "--kernel", kernel, files.cpio],
    /: a bzImage; Firecracker boots an uncompressed ELF vmlinux/,
    "fc",
  );
  await refused(
    ["--as", "urunc", "--kernel", files.cpio, files.cpio],
    /^slimroot: --kernel .*app\.cpio\.gz: .*not a kernel\n$/,
    "notkernel",
  );
  await refused(
    ["--as", "docker", files.cpio],
    /^slimroot: --as docker: not a form slimroot writes \(slimroot, urunc, flintlock, containerdisk\)\n$/,
    "badform",
  );
});

test("--as flintlock: the kernel and the initrd at the filenames a MicroVM spec names; a disk is refused", async (t) => {
  if (!kernel) return t.skip(NO_KERNEL);
  const pushed = await push([
    "--as",
    "flintlock",
    "--kernel",
    kernel,
    files.cpio,
    `docker://${registry.host}/fl:1`,
  ]);
  assert.deepEqual([...pushed.keys()], ["1-flintlock"]);
  const root = unpack("fl:1-flintlock", "flintlock");
  assert.ok(await same(join(root, "boot/vmlinux"), kernel), "kernel.filename boot/vmlinux");
  assert.ok(await same(join(root, "boot/initrd"), files.cpio), "initrd.filename boot/initrd");
  assert.equal(config("fl:1-flintlock").architecture, "amd64");
  const r = await cli([
    "push",
    "--insecure",
    "--as",
    "flintlock",
    "--kernel",
    kernel,
    files.ext4,
    `docker://${registry.host}/fl:2`,
  ]);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /^slimroot: .*app\.ext4: a ext4 image; flintlock's root volume is a container image's filesystem, not a disk file \(push an initramfs\)\n$/,
  );
});

test("--as containerdisk: the one disk under /disk/, owned by qemu (107), mode 0440; an initramfs is refused", async () => {
  const pushed = await push(["--as", "containerdisk", files.ext4, `docker://${registry.host}/vm:1`]);
  assert.deepEqual([...pushed.keys()], ["1-containerdisk"]);
  const size = (await readFile(files.ext4)).length;
  assert.deepEqual(await layerListing("vm:1-containerdisk"), [
    ["dr-xr-xr-x 107/107 0 disk/", `-r--r----- 107/107 ${size} disk/disk.img`],
  ]);
  const root = unpack("vm:1-containerdisk", "cdisk");
  assert.ok(await same(join(root, "disk/disk.img"), files.ext4));
  const r = await cli([
    "push",
    "--insecure",
    "--as",
    "containerdisk",
    files.cpio,
    `docker://${registry.host}/vm:2`,
  ]);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /^slimroot: .*app\.cpio\.gz: [^\n]*; a containerDisk holds a disk image \(build --format ext4, erofs or squashfs\)\n$/,
  );
});

test("every form: the same input pushed twice gives the same digests", async (t) => {
  if (!kernel) return t.skip(NO_KERNEL);
  const args = (tag: string) => [
    "--as",
    "slimroot",
    "--as",
    "urunc,flintlock",
    "--kernel",
    kernel!,
    files.cpio,
    `docker://${registry.host}/twice:${tag}`,
  ];
  const first = [...(await push(args("a"))).values()];
  const second = [...(await push(args("b"))).values()];
  assert.equal(first.length, 4, "TAG-kernel, TAG, TAG-urunc, TAG-flintlock");
  assert.deepEqual(second, first);
  // The kernel and the initrd are one blob each, shared by urunc's and flintlock's images.
  const layers = (tag: string) => raw(`twice:${tag}`).doc.layers.map((l: Json) => l.digest);
  assert.deepEqual(layers("a-urunc").slice(0, 2), layers("a-flintlock"));
  const disk = (tag: string) => [
    "--as",
    "containerdisk",
    files.ext4,
    `docker://${registry.host}/twice:${tag}`,
  ];
  assert.deepEqual([...(await push(disk("c"))).values()], [...(await push(disk("d"))).values()]);
});

test("the .why travels as a referrer (the tag-schema fallback here); inspect docker:// lists it without the image layer", async () => {
  const ref = `docker://${registry.host}/prov:1`;
  const r = await cli(["push", "--insecure", "--as", "slimroot,containerdisk", files.ext4, ref]);
  assert.equal(r.code, 0, r.stderr);
  const digest = digestOf(raw("prov:1").text);
  // distribution 2.8 has no referrers API: the fallback tag sha256-<hex> lists the referrer.
  assert.equal((await fetch(`${registry.url}/v2/prov/referrers/${digest}`)).status, 404);
  const index = raw(`prov:${digest.replace(":", "-")}`).doc;
  assert.equal(index.mediaType, "application/vnd.oci.image.index.v1+json");
  assert.equal(index.manifests.length, 1);
  assert.equal(index.manifests[0].artifactType, "application/vnd.slimroot.why.v1");
  const referrer = raw(`prov@${index.manifests[0].digest}`).doc;
  assert.equal(referrer.artifactType, "application/vnd.slimroot.why.v1");
  assert.deepEqual(referrer.config, {
    mediaType: "application/vnd.oci.empty.v1+json",
    digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    size: 2,
  });
  assert.equal(referrer.subject.digest, digest);
  const whyBytes = await readFile(`${files.ext4}.why`);
  assert.equal(referrer.layers[0].digest, digestOf(whyBytes), "the .why, byte for byte");

  // The image's own layer is gone from the repository: inspect still answers, from the referrer.
  const layer = raw("prov:1").doc.layers[0].digest.slice(7);
  await rm(join(registry.storageDir, `docker/registry/v2/repositories/prov/_layers/sha256/${layer}`), {
    recursive: true,
  });
  assert.equal((await fetch(`${registry.url}/v2/prov/blobs/sha256:${layer}`)).status, 404);
  const shown = await cli(["inspect", "--insecure", ref]);
  assert.equal(shown.code, 0, shown.stderr);
  const lines = shown.stdout.trim().split("\n");
  assert.match(lines[0]!, new RegExp(`^docker://.*prov:1@${digest}: ext4`));
  assert.ok(
    lines.some((l) => /^\/usr\/bin\/app {2}# /.test(l)),
    shown.stdout,
  );
  // The consumer form's image carries the same .why.
  const cd = await cli(["inspect", "--insecure", "--json", `${ref}-containerdisk`]);
  assert.equal(cd.code, 0, cd.stderr);
  assert.equal(JSON.parse(cd.stdout).header.format, "ext4");

  // Pushed again: the fallback index keeps one entry for it.
  await push(["--as", "slimroot", files.ext4, ref]);
  assert.equal(raw(`prov:${digest.replace(":", "-")}`).doc.manifests.length, 1);
  // A file pushed without a .why beside it: one line saying so.
  const bare = join(work, "bare.cpio.gz");
  await copyFile(files.cpio, bare);
  const digestBare = (await push(["--as", "slimroot", bare, `docker://${registry.host}/nowhy:1`])).get("1");
  const none = await cli(["inspect", "--insecure", `docker://${registry.host}/nowhy:1`]);
  assert.equal(none.code, 1);
  assert.match(
    none.stderr,
    new RegExp(
      `^slimroot: docker://.*nowhy:1: no \\.why is attached to ${digestBare} \\(pushed without one beside the file\\)\n$`,
    ),
  );
});

const kernelDir = await slimrootKernel("amd64");
test("push --kernel: the kernel under TAG-kernel, named in the config; run docker:// boots with it", {
  timeout: 300_000,
}, async () => {
  const image = await busyboxScriptImage(work, "bb.cpio.gz", "echo booted by the pushed kernel; exit 4");
  // A kernel directory, as run --kernel takes it: the kernel and its build config travel.
  const m = await readKernelManifest(kernelDir);
  const bz = join(kernelDir, m.kernel);
  const pushed = await push([
    "--as",
    "slimroot",
    "--kernel",
    kernelDir,
    image,
    `docker://${registry.host}/kboot:1`,
  ]);
  assert.deepEqual([...pushed.keys()], ["1-kernel", "1"], "the kernel's tag first, then the image's");
  const k = raw("kboot:1-kernel");
  assert.equal(k.doc.layers[0].mediaType, "application/vnd.slimroot.kernel.v1");
  assert.equal(k.doc.layers[0].digest, digestOf(await readFile(bz)));
  assert.equal(k.doc.layers[1].mediaType, "application/vnd.slimroot.kernel-config.v1");
  assert.equal(k.doc.layers[1].digest, digestOf(await readFile(join(kernelDir, m.config!))));
  const c = await (await fetch(`${registry.url}/v2/kboot/blobs/${raw("kboot:1").doc.config.digest}`)).json();
  assert.deepEqual(c.kernel, {
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    digest: digestOf(k.text),
    size: Buffer.byteLength(k.text),
  });
  const ref = `docker://${registry.host}/kboot:1`;
  const plan = await runCli(["run", "--insecure", "--dry-run", "--json", ref]);
  assert.equal(plan.code, 0, plan.stderr);
  assert.match(plan.stdout, /slimroot-pulled-[^"/]*\/vmlinuz-pulled"/, "the plan boots the pulled kernel");
  const r = await runCli(["run", "--insecure", ref]);
  assert.equal(r.code, 4, `${r.stderr}\n${r.stdout}`);
  assert.match(r.stdout, /^booted by the pushed kernel$/m);
});

test("a registry with the referrers API: push leaves no fallback tag when it answers OCI-Subject, and inspect asks the API", async () => {
  // distribution 2.8 has no referrers API: a proxy in front of it stands in for one, recording
  // each manifest PUT with a subject and answering GET /v2/REPO/referrers/DIGEST from that.
  const referrers = new Map<string, object[]>();
  const proxy = await forwardingProxy(
    registry,
    (req, _body, res) => {
      const m = /^\/v2\/api\/referrers\/(sha256:[0-9a-f]{64})/.exec(req.url ?? "");
      if (req.method !== "GET" || !m) return false;
      const index = {
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: referrers.get(m[1]!) ?? [],
      };
      res
        .writeHead(200, { "content-type": "application/vnd.oci.image.index.v1+json" })
        .end(JSON.stringify(index));
      return true;
    },
    (req, body, status, headers) => {
      if (req.method !== "PUT" || !req.url?.includes("/manifests/") || status !== 201 || !body) return;
      const doc = JSON.parse(body.toString());
      if (!doc.subject) return;
      const entry = {
        mediaType: doc.mediaType,
        digest: digestOf(body),
        size: body.length,
        artifactType: doc.artifactType,
      };
      referrers.set(doc.subject.digest, [...(referrers.get(doc.subject.digest) ?? []), entry]);
      headers["oci-subject"] = doc.subject.digest;
    },
  );
  try {
    const ref = `docker://${proxy.host}/api:1`;
    const r = await cli(["push", "--insecure", files.ext4, ref]);
    assert.equal(r.code, 0, r.stderr);
    const digest = r.stdout.trim();
    assert.equal(referrers.get(digest)?.length, 1, "the referrer went to the API");
    const fallback = await fetch(`${registry.url}/v2/api/manifests/${digest.replace(":", "-")}`);
    assert.equal(fallback.status, 404, "no fallback tag where the registry indexes referrers itself");
    const shown = await cli(["inspect", "--insecure", ref]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /^\/usr\/bin\/app {2}# /m);
    assert.ok(
      proxy.log.some((l) => l.startsWith(`GET /v2/api/referrers/${digest}?artifactType=`)),
      proxy.log.join("\n"),
    );
  } finally {
    await proxy.close();
  }
});

test("several architectures: each form an image index by platform; the kernels given by directory, one per architecture", async (t) => {
  const dirs = (["amd64", "arm64"] as const).map((a) => fetchedKernelDir(a));
  if (!dirs.every((d) => existsSync(join(d, "manifest.json"))))
    return t.skip("no fetched amd64 and arm64 kernels (slimroot kernel fetch --arch ...)");
  const build = await appBuilder(work);
  const arm = await build("app.arm64.cpio.zst", ["--platform", "linux/arm64", "--compress", "zstd"]);
  const pushed = await push([
    "--as",
    "slimroot,flintlock",
    "--kernel",
    dirs[0]!,
    "--kernel",
    dirs[1]!,
    files.cpio,
    arm,
    `docker://${registry.host}/multi:1`,
  ]);
  assert.deepEqual([...pushed.keys()], ["1-kernel", "1", "1-flintlock"]);
  for (const tag of pushed.keys()) {
    const { text, doc } = raw(`multi:${tag}`);
    assert.equal(digestOf(text), pushed.get(tag));
    assert.equal(doc.mediaType, "application/vnd.oci.image.index.v1+json", tag);
    assert.deepEqual(
      doc.manifests.map((m: Json) => m.platform),
      [
        { architecture: "amd64", os: "linux" },
        { architecture: "arm64", os: "linux" },
      ],
      tag,
    );
    const own = tag !== "1-flintlock";
    assert.equal(doc.artifactType, own ? "application/vnd.slimroot.image.v1" : undefined, tag);
  }
  const armFl = raw("multi:1-flintlock").doc.manifests[1].digest;
  assert.equal(config(`multi@${armFl}`).architecture, "arm64");
  const root = unpack(`multi@${armFl}`, "fl-arm");
  assert.ok(await same(join(root, "boot/initrd"), arm));
  const armKernel = join(dirs[1]!, (await readKernelManifest(dirs[1]!)).kernel);
  assert.ok(await same(join(root, "boot/vmlinux"), armKernel));
  const twice = await cli([
    "push",
    "--insecure",
    "--kernel",
    dirs[0]!,
    "--kernel",
    dirs[0]!,
    files.cpio,
    `docker://${registry.host}/multi:2`,
  ]);
  assert.equal(twice.code, 1);
  assert.match(twice.stderr, /: a second amd64 kernel; one per architecture\n$/);
});
