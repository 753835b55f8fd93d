/**
 * Fuzzing the registry client's parsing with generated hostile input (issue 7, checks):
 * WWW-Authenticate challenges, image references, and every JSON document it reads (manifests,
 * indexes, configs, token answers, docker config.json). Properties: nothing but a one-line
 * UserError ever escapes, what is accepted has the promised shape, and well-formed input
 * round-trips. Runs are bounded in number and time; RUNS below is what the README reports.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import { fakeImage, fakeRegistry, sha256 } from "../../../test/support/registry-server.js";
import { EnvironmentError, UserError } from "../../util/errors.js";
import { readManifest } from "../manifest.js";
import { type DocumentKind, readDocument } from "../schemas.js";
import { type Challenge, mayCarryCredentials, parseWwwAuthenticate } from "./auth.js";
import { pullImage } from "./client.js";
import { formatReference, parseReference } from "./reference.js";

/** Runs per property, and a time bound so a slow machine cannot stretch `make test`. */
const RUNS = 2000;
const BOUND = { numRuns: RUNS, interruptAfterTimeLimit: 20_000 };
/** Whole pulls against a fake registry cost a few HTTP round trips each. */
const PULL_RUNS = 300;
const PULL_BOUND = { numRuns: PULL_RUNS, interruptAfterTimeLimit: 60_000 };

function expectOneLineUserError(err: unknown, prefix: string) {
  assert.ok(err instanceof UserError, `not a UserError: ${String(err)}`);
  assert.ok(err.message.startsWith(prefix), err.message);
  assert.ok(!err.message.includes("\n"), err.message);
}

/** Hostile JSON text: random JSON, binary, and valid manifests or indexes with one value replaced. */
const digest = fc.stringMatching(/^[a-f0-9]{64}$/).map((h) => `sha256:${h}`);
const descriptor = fc.record({ mediaType: fc.string(), digest, size: fc.nat() });
/** A valid image manifest or index with one value somewhere replaced by hostile JSON. */
const mutated = fc
  .tuple(
    fc.oneof(
      fc.record({
        schemaVersion: fc.constant(2),
        config: descriptor,
        layers: fc.array(descriptor, { maxLength: 3 }),
      }),
      fc.record({
        schemaVersion: fc.constant(2),
        mediaType: fc.constant("application/vnd.oci.image.index.v1+json"),
        manifests: fc.array(descriptor, { maxLength: 3 }),
      }),
    ),
    fc.jsonValue({ maxDepth: 3 }),
    fc.nat(),
  )
  .map(([doc, junk, pick]) => {
    // Replace the pick-th value found walking the document.
    const slots: [Record<string, unknown> | unknown[], string | number][] = [];
    const walk = (v: unknown) => {
      if (v && typeof v === "object")
        for (const [k, child] of Object.entries(v)) {
          slots.push([v as Record<string, unknown>, Array.isArray(v) ? Number(k) : k]);
          walk(child);
        }
    };
    walk(doc);
    if (slots.length) {
      const [parent, key] = slots[pick % slots.length]!;
      (parent as Record<string | number, unknown>)[key] = junk;
    }
    return JSON.stringify(doc);
  });
const anyText = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 100, unit: "binary" }),
  mutated,
);

describe("fuzz: WWW-Authenticate", () => {
  const token = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_.-]{0,8}$/);
  const challenge: fc.Arbitrary<Challenge> = fc.record({
    scheme: token.map((s) => s.toLowerCase()),
    params: fc.dictionary(
      token.map((s) => s.toLowerCase()),
      fc.string({ maxLength: 20, unit: "binary" }).filter((v) => !/[\r\n]/.test(v)),
      { maxKeys: 4 },
    ),
  });
  const quote = (v: string) => `"${v.replace(/["\\]/g, (c) => `\\${c}`)}"`;
  const format = (cs: Challenge[]) =>
    cs
      .map(
        (c) =>
          `${c.scheme}${Object.keys(c.params).length ? " " : ""}${Object.entries(c.params)
            .map(([k, v]) => `${k}=${quote(v)}`)
            .join(", ")}`,
      )
      .join(", ");

  it("well-formed challenges round-trip", () => {
    fc.assert(
      fc.property(fc.array(challenge, { maxLength: 3 }), (cs) => {
        const plain = cs.map((c) => ({ scheme: c.scheme, params: { ...c.params } }));
        assert.deepEqual(parseWwwAuthenticate(format(cs)), plain);
      }),
      BOUND,
    );
  });

  it("any header (binary, huge, unbalanced quotes, '=' runs) parses without throwing, to lower-case schemes", () => {
    const hostile = fc.oneof(
      fc.string({ maxLength: 200, unit: "binary" }),
      fc
        .array(fc.constantFrom('"', "\\", "=", ",", " ", "Bearer", "realm", "==", "\t", "x"), {
          maxLength: 60,
        })
        .map((a) => a.join("")),
    );
    fc.assert(
      fc.property(hostile, (header) => {
        for (const c of parseWwwAuthenticate(header)) {
          assert.equal(c.scheme, c.scheme.toLowerCase());
          for (const v of Object.values(c.params)) assert.equal(typeof v, "string");
        }
      }),
      BOUND,
    );
  });
});

describe("fuzz: image references", () => {
  const pieces = fc.constantFrom(
    "a",
    "/",
    ":",
    "@",
    ".",
    "..",
    "-",
    "_",
    "sha256:",
    "A",
    "0",
    "%2e",
    "\u00e9",
    " ",
    "\n",
  );
  const hostile = fc.oneof(
    fc.string({ maxLength: 80, unit: "binary" }),
    fc.array(pieces, { maxLength: 40 }).map((a) => a.join("")),
  );

  it("either a one-line UserError naming the reference, or a reference with only grammar-clean parts", () => {
    fc.assert(
      fc.property(hostile, (text) => {
        let ref: ReturnType<typeof parseReference>;
        try {
          ref = parseReference(text.replace(/\n/g, ""));
        } catch (err) {
          expectOneLineUserError(err, "docker://");
          return;
        }
        for (const part of ref.repository.split("/"))
          assert.match(part, /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/);
        assert.doesNotMatch(ref.registry, /[/@\s]/);
        assert.deepEqual(parseReference(formatReference(ref)), ref);
      }),
      BOUND,
    );
  });
});

describe("fuzz: JSON documents", () => {
  const KINDS: DocumentKind[] = [
    "manifestDocument",
    "index",
    "imageManifest",
    "imageConfig",
    "dockerArchiveManifest",
    "tokenResponse",
    "dockerConfig",
    "credentialHelperOutput",
  ];
  it("every document kind: accepted, or one UserError line naming the file", () => {
    fc.assert(
      fc.property(fc.constantFrom(...KINDS), anyText, (kind, text) => {
        try {
          readDocument(kind, text, "F.json");
        } catch (err) {
          expectOneLineUserError(err, "F.json: ");
        }
      }),
      BOUND,
    );
  });

  it("a manifest that is accepted has the shape the client relies on", () => {
    fc.assert(
      fc.property(anyText, (text) => {
        let m: ReturnType<typeof readManifest>;
        try {
          m = readManifest(Buffer.from(text), "M");
        } catch (err) {
          expectOneLineUserError(err, "M: ");
          return;
        }
        const descriptors = m.kind === "index" ? m.doc.manifests : [m.doc.config, ...m.doc.layers];
        for (const d of descriptors) {
          assert.match(d.digest, /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/);
          assert.ok(Number.isSafeInteger(d.size) && d.size >= 0);
        }
      }),
      BOUND,
    );
  });
});

describe("fuzz: where credentials may go", () => {
  it("never over plain http to a host that is not loopback, whatever the URL", () => {
    const host = fc.oneof(
      fc.constantFrom(
        "127.0.0.1",
        "localhost",
        "[::1]",
        "127.1.2.3",
        "10.0.0.1",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "[::ffff:127.0.0.1]",
      ),
      fc.domain(),
    );
    fc.assert(
      fc.property(fc.constantFrom("http", "https"), host, fc.boolean(), (scheme, h, insecure) => {
        const url = new URL(`${scheme}://${h}/v2/`);
        const loopback =
          ["localhost", "[::1]"].includes(url.hostname) || /^127\.\d+\.\d+\.\d+$/.test(url.hostname);
        assert.equal(mayCarryCredentials(url, insecure), scheme === "https" || (insecure && loopback));
      }),
      BOUND,
    );
  });
});

describe("fuzz: whole pulls from a registry serving hostile manifests and challenges", () => {
  let cacheDir: string;
  /** What the fake registry answers right now: the tag's manifest, or a 401 with this challenge. */
  const serving: { manifest: string; challenge?: string } = { manifest: "{}" };
  let fake: Awaited<ReturnType<typeof fakeRegistry>>;
  before(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), "slimroot-fuzz-pull-"));
    const img = await fakeImage();
    fake = await fakeRegistry((req, res) => {
      if (serving.challenge !== undefined)
        return void res.writeHead(401, { "www-authenticate": serving.challenge }).end();
      const m = /\/manifests\/(.+)$/.exec(req.url ?? "");
      if (m?.[1] === "v1") return void res.writeHead(200).end(serving.manifest);
      if (m?.[1] === sha256(serving.manifest)) return void res.writeHead(200).end(serving.manifest);
      if (m?.[1] === sha256(img.manifest)) return void res.writeHead(200).end(img.manifest);
      img.serve(req, res);
    });
  });
  after(async () => {
    await fake?.close();
    await rm(cacheDir, { recursive: true, force: true });
  });

  async function pull(manifest: string, challenge?: string) {
    serving.manifest = manifest;
    serving.challenge = challenge;
    const ref = `docker://${fake.host}/demo/app:v1`;
    try {
      await pullImage(ref, { insecure: true, platform: { os: "linux", architecture: "amd64" }, cacheDir });
    } catch (err) {
      assert.ok(err instanceof UserError || err instanceof EnvironmentError, `raw error: ${String(err)}`);
      assert.ok(err.message.startsWith(`${ref}: `) && !err.message.includes("\n"), err.message);
    }
  }

  it("a hostile manifest or index: the pull succeeds or fails with one line naming the reference", async () => {
    await fc.assert(
      fc.asyncProperty(anyText, (text) => pull(text)),
      PULL_BOUND,
    );
  });

  it("a hostile WWW-Authenticate challenge: one line naming the reference", async () => {
    const header = fc.oneof(
      fc.string({ maxLength: 100, unit: "binary-ascii" }).map((h) => h.replace(/[^\t\x20-\x7e]/g, "")),
      fc
        .array(
          fc.constantFrom(
            "Bearer ",
            "Basic ",
            "realm=",
            '"',
            ",",
            "service=",
            "scope=",
            "x",
            "=",
            "ftp://a",
            "error=insufficient_scope",
          ),
          { maxLength: 12 },
        )
        .map((a) => a.join("")),
    );
    await fc.assert(
      fc.asyncProperty(header, (h) => pull("{}", h)),
      PULL_BOUND,
    );
  });
});
