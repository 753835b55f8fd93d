import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { UserError } from "../../util/errors.js";
import { DOCKER_HUB, formatReference, parseReference, type Reference } from "./reference.js";

const D = `sha256:${"ab".repeat(32)}`;

describe("parseReference", () => {
  const cases: [string, Reference][] = [
    ["nginx", { registry: DOCKER_HUB, repository: "library/nginx", tag: "latest" }],
    ["docker://nginx:1.25", { registry: DOCKER_HUB, repository: "library/nginx", tag: "1.25" }],
    ["docker.io/nginx", { registry: DOCKER_HUB, repository: "library/nginx", tag: "latest" }],
    ["index.docker.io/library/nginx:x", { registry: DOCKER_HUB, repository: "library/nginx", tag: "x" }],
    ["bitnami/redis", { registry: DOCKER_HUB, repository: "bitnami/redis", tag: "latest" }],
    ["localhost/app", { registry: "localhost", repository: "app", tag: "latest" }],
    ["127.0.0.1:5000/nginx:latest", { registry: "127.0.0.1:5000", repository: "nginx", tag: "latest" }],
    ["ghcr.io/a/b/c:v1.0_rc-1", { registry: "ghcr.io", repository: "a/b/c", tag: "v1.0_rc-1" }],
    ["[::1]:5000/app", { registry: "[::1]:5000", repository: "app", tag: "latest" }],
    [`quay.io/x/y@${D}`, { registry: "quay.io", repository: "x/y", digest: D }],
    [`host:5000/x:t@${D}`, { registry: "host:5000", repository: "x", tag: "t", digest: D }],
    ["my-host.example/a__b/c.d-e", { registry: "my-host.example", repository: "a__b/c.d-e", tag: "latest" }],
    ["Upper/app", { registry: "Upper", repository: "app", tag: "latest" }],
  ];
  for (const [text, want] of cases) {
    it(`parses ${text}`, () => assert.deepEqual(parseReference(text), want));
  }

  const bad = [
    "",
    "docker://",
    "NGINX",
    "nginx:",
    "nginx:bad/tag",
    "a//b",
    "/a",
    "a/",
    "nginx@sha256:abc",
    `nginx@sha512:${"ab".repeat(64)}`,
    "nginx:-x",
    "-host.io/a",
    "host.io/a_-b",
    `${"a".repeat(300)}`,
  ];
  for (const text of bad) {
    it(`refuses ${JSON.stringify(text)} with a UserError naming it`, () => {
      assert.throws(
        () => parseReference(text),
        (err: unknown) => {
          assert.ok(err instanceof UserError);
          const shown = text.startsWith("docker://") ? text : `docker://${text}`;
          assert.ok(err.message.startsWith(`${shown}: invalid image reference`), err.message);
          assert.ok(!err.message.includes("\n"));
          return true;
        },
      );
    });
  }

  it("says why a sha512 digest is refused", () => {
    assert.throws(() => parseReference(`a@sha512:${"cd".repeat(64)}`), /unsupported digest/);
  });
});

describe("formatReference / parseReference round trip", () => {
  const alnum = fc.stringMatching(/^[a-z0-9]{1,6}$/);
  const component = fc
    .tuple(alnum, fc.array(fc.tuple(fc.constantFrom(".", "_", "__", "-", "--"), alnum), { maxLength: 2 }))
    .map(([head, rest]) => head + rest.map(([s, a]) => s + a).join(""));
  const label = fc.stringMatching(/^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,5}[a-zA-Z0-9])?$/);
  // A first component is a registry only if it has a dot, a port or is localhost (docker's rule).
  const host = fc.oneof(
    fc.tuple(label, fc.array(label, { minLength: 1, maxLength: 3 })).map(([a, r]) => [a, ...r].join(".")),
    fc.tuple(label, fc.integer({ min: 1, max: 65535 })).map(([a, p]) => `${a}:${p}`),
    fc.constant("localhost"),
    fc.constant(DOCKER_HUB),
  );
  const tag = fc.stringMatching(/^\w[\w.-]{0,20}$/);
  const digest = fc.stringMatching(/^[a-f0-9]{64}$/).map((h) => `sha256:${h}`);
  const reference = fc
    .record(
      {
        registry: host,
        repository: fc.array(component, { minLength: 1, maxLength: 4 }),
        tag: fc.option(tag, { nil: undefined }),
        digest: fc.option(digest, { nil: undefined }),
      },
      { requiredKeys: ["registry", "repository"] },
    )
    .filter((r) => !["docker.io", "index.docker.io"].includes(r.registry.toLowerCase()))
    .map((r): Reference => {
      let repository = r.repository.join("/");
      if (r.registry === DOCKER_HUB && r.repository.length === 1) repository = `library/${repository}`;
      const out: Reference = { registry: r.registry, repository };
      if (r.tag !== undefined) out.tag = r.tag;
      if (r.digest !== undefined) out.digest = r.digest;
      if (!out.tag && !out.digest) out.tag = "latest";
      return out;
    });

  it("parse(format(ref)) gives ref back", () => {
    fc.assert(fc.property(reference, (ref) => assert.deepEqual(parseReference(formatReference(ref)), ref)));
  });

  it("any string either fails with a UserError or parses to a fixed point", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (text) => {
        let ref: Reference;
        try {
          ref = parseReference(text);
        } catch (err) {
          assert.ok(err instanceof UserError);
          return;
        }
        assert.deepEqual(parseReference(formatReference(ref)), ref);
      }),
    );
  });
});
