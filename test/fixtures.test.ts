// Sanity checks on the Debian-built fixtures, so a broken fixture fails here, by name,
// rather than as a puzzling failure in the tests that use it.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { lstat, readFile, readlink, stat } from "node:fs/promises";
import path from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import {
  busyboxFixture,
  busyboxMultiArchFixture,
  type ImageFixture,
  nginxFixture,
} from "./support/fixtures.js";

const run = promisify(execFile);

interface Descriptor {
  digest: string;
}
interface Manifest {
  config: Descriptor;
  layers: Descriptor[];
}
interface ImageConfig {
  architecture: string;
  os: string;
  config: {
    Entrypoint?: string[];
    Cmd?: string[];
    Env?: string[];
    ExposedPorts?: Record<string, object>;
  };
}

async function readBlob<T>(layout: string, d: Descriptor): Promise<T> {
  const [alg, hex] = d.digest.split(":");
  return JSON.parse(await readFile(path.join(layout, "blobs", alg!, hex!), "utf8")) as T;
}

async function ociImage(f: ImageFixture): Promise<{ manifest: Manifest; config: ImageConfig }> {
  const index = JSON.parse(await readFile(path.join(f.ociLayout, "index.json"), "utf8")) as {
    manifests: (Descriptor & { annotations?: Record<string, string> })[];
  };
  const latest = index.manifests.find(
    (m) => m.annotations?.["org.opencontainers.image.ref.name"] === "latest",
  );
  assert.ok(latest, "index.json has a manifest tagged latest");
  const manifest = await readBlob<Manifest>(f.ociLayout, latest);
  return { manifest, config: await readBlob<ImageConfig>(f.ociLayout, manifest.config) };
}

async function tarList(tarball: string, ...members: string[]): Promise<string[]> {
  const { stdout } = await run("tar", ["-tf", tarball, ...members], { maxBuffer: 64 << 20 });
  return stdout.split("\n").filter(Boolean);
}

async function dockerManifest(f: ImageFixture): Promise<{ RepoTags: string[]; Layers: string[] }[]> {
  const { stdout } = await run("tar", ["-xOf", f.dockerArchive, "manifest.json"]);
  return JSON.parse(stdout);
}

/** ELF e_machine: 0x3e x86-64, 0xb7 aarch64. */
async function elfMachine(file: string): Promise<number> {
  const head = (await readFile(file)).subarray(0, 20);
  assert.equal(head.subarray(0, 4).toString("latin1"), "\x7fELF");
  return head.readUInt16LE(18);
}

describe("nginx fixture", () => {
  test("all artifacts exist", async () => {
    const f = await nginxFixture();
    for (const p of [f.ociLayout, f.dockerArchive, f.rootfsTar, f.unpacked]) await stat(p);
    assert.equal(f.ociRef, `oci:${f.ociLayout}:latest`);
  });

  test("unpacked tree has nginx, its config and stdout/stderr log links", async () => {
    const f = await nginxFixture();
    assert.ok((await stat(path.join(f.unpacked, "usr/sbin/nginx"))).mode & 0o111);
    assert.equal(await elfMachine(path.join(f.unpacked, "usr/sbin/nginx")), 0x3e);
    await stat(path.join(f.unpacked, "etc/nginx/nginx.conf"));
    assert.equal(await readlink(path.join(f.unpacked, "var/log/nginx/access.log")), "/dev/stdout");
    // Merged /usr, as in current Debian images.
    assert.equal(await readlink(path.join(f.unpacked, "bin")), "usr/bin");
  });

  test("OCI config matches the official image's intent, with a base and an app layer", async () => {
    const { manifest, config } = await ociImage(await nginxFixture());
    assert.ok(manifest.layers.length >= 2, `expected >= 2 layers, got ${manifest.layers.length}`);
    assert.equal(config.architecture, "amd64");
    assert.equal(config.os, "linux");
    assert.deepEqual(config.config.Entrypoint, ["nginx", "-g", "daemon off;"]);
    assert.ok(config.config.ExposedPorts?.["80/tcp"]);
    assert.ok(config.config.Env?.some((e) => e.startsWith("PATH=")));
  });

  test("rootfs tarball has nginx; docker-archive carries the same layers", async () => {
    const f = await nginxFixture();
    assert.deepEqual(await tarList(f.rootfsTar, "./usr/sbin/nginx"), ["./usr/sbin/nginx"]);
    const [entry] = await dockerManifest(f);
    assert.ok(
      entry?.RepoTags.some((t) => t.endsWith("nginx:latest")),
      JSON.stringify(entry?.RepoTags),
    );
    const { manifest } = await ociImage(f);
    assert.equal(entry?.Layers.length, manifest.layers.length);
  });

  test("app layer deletes files from the base layer (whiteouts)", async () => {
    const f = await nginxFixture();
    const { manifest } = await ociImage(f);
    const top = manifest.layers.at(-1)!.digest.split(":");
    const entries = await tarList(path.join(f.ociLayout, "blobs", top[0]!, top[1]!));
    assert.ok(
      entries.some((e) => path.basename(e).startsWith(".wh.")),
      "no whiteout in the top layer",
    );
  });
});

for (const arch of ["amd64", "arm64"] as const) {
  describe(`busybox fixture (${arch})`, () => {
    test("busybox binary for the right arch, with applet symlinks", async () => {
      const f = await busyboxFixture(arch);
      const bin = path.join(f.unpacked, "bin/busybox");
      assert.equal(await elfMachine(bin), arch === "amd64" ? 0x3e : 0xb7);
      assert.equal(await readlink(path.join(f.unpacked, "bin/sh")), "/bin/busybox");
      assert.ok((await lstat(path.join(f.unpacked, "bin/ls"))).isSymbolicLink());
    });

    test("user app (1000:1000) with an owned home", async () => {
      const f = await busyboxFixture(arch);
      const passwd = await readFile(path.join(f.unpacked, "etc/passwd"), "utf8");
      assert.match(passwd, /^app:x:1000:1000:[^:]*:\/home\/app:/m);
      assert.match(await readFile(path.join(f.unpacked, "etc/group"), "utf8"), /^app:x:1000:/m);
      const home = await stat(path.join(f.unpacked, "home/app"));
      assert.equal(home.uid, 1000);
      assert.equal(home.gid, 1000);
    });

    test("OCI config: Cmd sh, arch set; docker-archive and rootfs tarball present", async () => {
      const f = await busyboxFixture(arch);
      const { config } = await ociImage(f);
      assert.equal(config.architecture, arch);
      assert.deepEqual(config.config.Cmd, ["sh"]);
      assert.ok((await dockerManifest(f))[0]?.RepoTags.some((t) => t.endsWith("busybox:latest")));
      assert.deepEqual(await tarList(f.rootfsTar, "./bin/busybox"), ["./bin/busybox"]);
    });
  });
}

test("multi-arch busybox: index with both platforms, resolvable by skopeo", async () => {
  const f = await busyboxMultiArchFixture();
  const index = JSON.parse(await readFile(path.join(f.ociLayout, "index.json"), "utf8")) as {
    manifests: Descriptor[];
  };
  const top = await readBlob<{ manifests: (Descriptor & { platform: { architecture: string } })[] }>(
    f.ociLayout,
    index.manifests[0]!,
  );
  assert.deepEqual(
    top.manifests.map((m) => m.platform.architecture),
    ["amd64", "arm64"],
  );
  // skopeo picks the arm64 manifest out of the index, proving the layout is well formed.
  const { stdout } = await run("skopeo", ["--override-arch", "arm64", "inspect", "--config", f.ociRef]);
  assert.equal((JSON.parse(stdout) as ImageConfig).architecture, "arm64");
});

test("concurrent callers get the same cached fixture", async () => {
  const [a, b] = await Promise.all([busyboxFixture("amd64"), busyboxFixture("amd64")]);
  assert.equal(a.dir, b.dir);
  const again = await busyboxFixture("amd64");
  assert.equal(again.dir, a.dir);
});
