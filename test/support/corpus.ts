/**
 * The app corpus of test/corpus.test.ts: real apps on Debian packages, each chosen for a
 * different way of finding its files, each with a probe whose answer proves the app worked
 * (not only that a port opened).
 *
 * Images are built by test/fixtures/corpus.sh and cached like the other fixtures
 * (test/support/fixtures.ts): one Debian base layer built once, and per app an OCI layout of
 * that base plus the app's own packages and files, keyed by a hash of its recipe, the files
 * under test/fixtures/corpus/<app>/ and the script. So an app's whole image is base + its
 * packages, never the other apps'.
 *
 * Prebuild: node --import tsx test/support/corpus.ts --build-all
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import {
  cachedDir,
  type FixtureArch,
  hash,
  lighttpdFixture,
  MIRROR,
  nginxFixture,
  once,
  runFixtureScript,
  SOURCE_DATE_EPOCH,
  SUITE,
} from "./fixtures.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const script = path.resolve(here, "../fixtures/corpus.sh");
const filesRoot = path.resolve(here, "../fixtures/corpus");
const ARCH: FixtureArch = "amd64";
const PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface CorpusApp {
  name: string;
  /** What it covers. */
  finds: string;
  /** The probe the trace, and then the verification of every traced build, runs. */
  probe: string;
  /** `oci:...:latest` of its image. */
  source: () => Promise<string>;
}

interface Recipe {
  name: string;
  packages: string[];
  /** umoci config options: entrypoint, workdir, env (PATH is added). */
  config: string[];
}

const entrypoint = (...args: string[]) => args.flatMap((a) => ["--config.entrypoint", a]);
const get = (port: number, path: string, expect: string) =>
  `tcp:${port}:GET ${path} HTTP/1.0\\r\\n\\r\\n:${expect}`;

function built(r: Recipe): () => Promise<string> {
  return async () => `oci:${path.join(await corpusImage(r), "oci")}:latest`;
}

function app(finds: string, probe: string, r: Recipe): CorpusApp {
  return { name: r.name, finds, probe, source: built(r) };
}

const existing = (f: () => Promise<{ ociRef: string }>) => async () => (await f()).ociRef;

/**
 * The JRE: its fixture build (about 4 min), a trace of about a minute and builds of a 190 MB
 * tree cost more than make test's budget leaves; `make test-corpus-slow` (SLIMROOT_CORPUS_SLOW=1)
 * runs it.
 */
export const SLOW_APPS = new Set(["java"]);
export const slowAppsOn = () => process.env.SLIMROOT_CORPUS_SLOW === "1";

/** The corpus, cheapest boots first. */
export const CORPUS: CorpusApp[] = [
  {
    name: "nginx",
    finds: "C server that drops root to www-data and reads a config directory",
    probe: get(80, "/", "Welcome to nginx!"),
    source: existing(nginxFixture),
  },
  {
    name: "lighttpd",
    finds: "C server that dlopens its modules by path and runs perl at startup; lists a directory",
    probe: get(80, "/files/", "a.txt"),
    source: existing(lighttpdFixture),
  },
  app("shell entrypoint calling programs on PATH; iconv dlopens a gconv module", "", {
    name: "shell",
    packages: ["socat"],
    config: entrypoint("/app/start.sh"),
  }),
  app("Go binary (Debian's caddy; its postinst needs passwd) serving files, reading mime.types", "", {
    name: "caddy",
    packages: ["passwd", "caddy"],
    config: [
      ...entrypoint("caddy", "file-server", "--listen", ":8080", "--root", "/app/www"),
      "--config.env",
      "HOME=/root",
    ],
  }),
  app("Perl with XS modules and a module found through @INC", "", {
    name: "perl",
    packages: ["perl"],
    config: entrypoint("perl", "/app/server.pl"),
  }),
  app("Python with C extensions and plugins found by listing a directory", "", {
    name: "pyplugins",
    packages: ["python3"],
    config: entrypoint("python3", "/app/server.py"),
  }),
  app("Python loading a library with dlopen by soname (ctypes)", "", {
    name: "dlopen",
    packages: ["python3", "libyaml-0-2"],
    config: entrypoint("python3", "/app/server.py"),
  }),
  app("PHP's CLI server; extensions found by listing conf.d", "", {
    name: "php",
    packages: ["php-cli"],
    config: entrypoint("php", "-S", "0.0.0.0:8080", "-t", "/app/www"),
  }),
  app("Ruby with C extensions; rubygems lists its spec directories", "", {
    name: "ruby",
    packages: ["ruby"],
    config: entrypoint("ruby", "/app/server.rb"),
  }),
  app("Node resolving ./lib and a node_modules package by lookups", "", {
    name: "node",
    packages: ["nodejs"],
    config: entrypoint("node", "/app/server.js"),
  }),
  app("Java on a JRE: a single source file compiled in memory, the JDK's modules image", "", {
    name: "java",
    packages: ["openjdk-17-jre-headless"],
    config: entrypoint("java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "/app/Hello.java"),
  }),
];

// Each app's checked answer (what its code in test/fixtures/corpus/<app>/ computes).
const ANSWERS: Record<string, string> = {
  shell: "shell says HELLO CORPUS sha 6b17b8fcc411 ebcdic 8889",
  caddy: "caddy serves the corpus",
  perl: "perl says hello corpus json [42] md5 9a913803",
  pyplugins: "plugins p_db p_decimal p_digest; db 42; decimal 0.14285714; digest 6b17b8fcc411",
  dlopen: "libyaml 0.2.5 loaded by name",
  php: "php says hello corpus ctype yes latin1 e9 json [4,2] php 8",
  ruby: "ruby says hello corpus json [4,2] md5 9a913803",
  node: "node says hello corpus padded [   42] node 18",
  java: "java 17 says hello corpus",
};
for (const a of CORPUS) if (a.probe === "") a.probe = get(8080, "/", ANSWERS[a.name]!);

/** The Debian base every corpus app's image has as its first layer, as a tar (tar: source). */
export async function corpusBaseTar(): Promise<string> {
  return path.join(await corpusBase(), "base.tar");
}

/** The Debian base layer every corpus app shares: built once. */
function corpusBase(): Promise<string> {
  const id = `corpus-base-${ARCH}`;
  return once(id, async () => {
    const recipe = { suite: SUITE, mirror: MIRROR, arch: ARCH, sourceDateEpoch: SOURCE_DATE_EPOCH };
    const key = hash(JSON.stringify(recipe), await readFile(script));
    return cachedDir(id, key, (tmp) => runFixtureScript(script, ["base", tmp], tmp, scriptEnv()), {
      name: id,
      ...recipe,
    });
  });
}

function scriptEnv(): Record<string, string> {
  return {
    FIXTURE_ARCH: ARCH,
    FIXTURE_SUITE: SUITE,
    FIXTURE_MIRROR: MIRROR,
    SOURCE_DATE_EPOCH: String(SOURCE_DATE_EPOCH),
  };
}

/** Every file under `dir` with its content, in a stable order (a missing dir is empty). */
async function treeText(dir: string): Promise<string> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  const files = entries
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name))
    .sort();
  const parts = await Promise.all(
    files.map(async (f) => `${path.relative(dir, f)}\0${await readFile(f, "base64")}`),
  );
  return parts.join("\0");
}

function corpusImage(r: Recipe): Promise<string> {
  const id = `corpus-${r.name}-${ARCH}`;
  return once(id, async () => {
    const base = await corpusBase();
    const files = path.join(filesRoot, r.name);
    const config = [...r.config, "--config.env", PATH_ENV];
    const key = hash(
      path.basename(base),
      JSON.stringify({ ...r, config }),
      await treeText(files),
      await readFile(script),
    );
    return cachedDir(
      id,
      key,
      (tmp) =>
        runFixtureScript(script, ["app", tmp], tmp, {
          ...scriptEnv(),
          CORPUS_BASE: path.join(base, "base.tar"),
          CORPUS_FILES: files,
          FIXTURE_PACKAGES: r.packages.join(" "),
          CORPUS_CONFIG: config.join("\n"),
        }),
      { ...r, base },
    );
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  if (!process.argv.includes("--build-all")) {
    process.stderr.write("usage: node --import tsx test/support/corpus.ts --build-all\n");
    process.exit(2);
  }
  // Sequential: network and disk bound, 2 cores. The slow apps only when their tests run.
  for (const a of CORPUS)
    if (!SLOW_APPS.has(a.name) || slowAppsOn()) process.stdout.write(`${a.name} ${await a.source()}\n`);
}
