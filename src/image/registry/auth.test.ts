import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { EnvironmentError, UserError } from "../../util/errors.js";
import { loadCredentials, parseWwwAuthenticate } from "./auth.js";

describe("parseWwwAuthenticate", () => {
  it("parses a registry Bearer challenge", () => {
    assert.deepEqual(
      parseWwwAuthenticate(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"',
      ),
      [
        {
          scheme: "bearer",
          params: {
            realm: "https://auth.docker.io/token",
            service: "registry.docker.io",
            scope: "repository:library/nginx:pull",
          },
        },
      ],
    );
  });

  it("parses Basic, unquoted values, spaces and escapes", () => {
    assert.deepEqual(parseWwwAuthenticate('Basic realm="a \\"quoted\\" realm" , charset=UTF-8'), [
      { scheme: "basic", params: { realm: 'a "quoted" realm', charset: "UTF-8" } },
    ]);
  });

  it("splits several challenges in one header", () => {
    const got = parseWwwAuthenticate(
      'Basic realm="r1", Bearer realm="https://x/token",scope="repository:a:pull",error="insufficient_scope"',
    );
    assert.deepEqual(got, [
      { scheme: "basic", params: { realm: "r1" } },
      {
        scheme: "bearer",
        params: { realm: "https://x/token", scope: "repository:a:pull", error: "insufficient_scope" },
      },
    ]);
  });

  it("keeps a token68 and a scheme without parameters", () => {
    assert.deepEqual(parseWwwAuthenticate("Negotiate abc==, Basic"), [
      { scheme: "negotiate", params: { "": "abc==" } },
      { scheme: "basic", params: {} },
    ]);
  });

  it("survives garbage", () => {
    assert.deepEqual(parseWwwAuthenticate(""), []);
    assert.doesNotThrow(() => parseWwwAuthenticate('=,"",Bearer realm="unterminated'));
    assert.deepEqual(parseWwwAuthenticate('Bearer realm="unterminated'), [
      { scheme: "bearer", params: { realm: "unterminated" } },
    ]);
  });
});

describe("loadCredentials", () => {
  let dir: string;
  let bin: string;
  const where = "docker://example/x";
  const env = (extra: Record<string, string> = {}) => ({
    DOCKER_CONFIG: dir,
    PATH: `${bin}:/usr/bin:/bin`,
    ...extra,
  });
  const config = (json: unknown) => writeFile(join(dir, "config.json"), JSON.stringify(json));
  const b64 = (s: string) => Buffer.from(s).toString("base64");

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "slimroot-auth-"));
    bin = join(dir, "bin");
    await mkdir(bin);
    // A fake credential helper: knows one server, says "not found" for the rest.
    await writeFile(
      join(bin, "docker-credential-fake"),
      [
        "#!/bin/sh",
        "server=$(cat)",
        'case "$server" in',
        '  "reg.example:5000") echo \'{"ServerURL":"reg.example:5000","Username":"bob","Secret":"pw:with:colons"}\' ;;',
        '  "https://index.docker.io/v1/") echo \'{"Username":"<token>","Secret":"refresh-me"}\' ;;',
        '  "broken.example") echo "not json" ;;',
        '  "fails.example") echo "keychain locked" >&2; exit 3 ;;',
        '  *) echo "credentials not found in native keychain"; exit 1 ;;',
        "esac",
      ].join("\n"),
    );
    await chmod(join(bin, "docker-credential-fake"), 0o755);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("returns nothing without a config file", async () => {
    assert.equal(
      await loadCredentials("reg.example", where, env({ DOCKER_CONFIG: join(dir, "none") })),
      undefined,
    );
  });

  it("decodes auths[host].auth, matching keys with a scheme or path", async () => {
    await config({ auths: { "https://reg.example:5000/v1/": { auth: b64("alice:p:w") } } });
    const got = await loadCredentials("reg.example:5000", where, env());
    assert.equal(got?.username, "alice");
    assert.equal(got?.password, "p:w");
    assert.equal(await loadCredentials("reg.example", where, env()), undefined);
  });

  it("finds Docker Hub credentials under docker's legacy key", async () => {
    await config({ auths: { "https://index.docker.io/v1/": { auth: b64("hubuser:hubpw") } } });
    const got = await loadCredentials("registry-1.docker.io", where, env());
    assert.equal(got?.username, "hubuser");
  });

  it("asks credHelpers first, then credsStore", async () => {
    await config({
      credHelpers: { "reg.example:5000": "fake" },
      auths: { "reg.example:5000": { auth: b64("alice:pw") } },
    });
    const got = await loadCredentials("reg.example:5000", where, env());
    assert.deepEqual([got?.username, got?.password], ["bob", "pw:with:colons"]);

    await config({ credsStore: "fake" });
    assert.equal((await loadCredentials("reg.example:5000", where, env()))?.username, "bob");
    assert.equal(await loadCredentials("unknown.example", where, env()), undefined);
    const hub = await loadCredentials("registry-1.docker.io", where, env());
    assert.equal(hub?.identityToken, "refresh-me");
  });

  it("reports helper failures as one-line EnvironmentErrors", async () => {
    await config({ credsStore: "fake" });
    await assert.rejects(loadCredentials("broken.example", where, env()), (err: unknown) => {
      assert.ok(err instanceof EnvironmentError);
      assert.match(err.message, /^docker:\/\/example\/x: docker-credential-fake get printed something/);
      return true;
    });
    await assert.rejects(loadCredentials("fails.example", where, env()), /keychain locked/);
    await config({ credsStore: "missing" });
    await assert.rejects(
      loadCredentials("reg.example", where, env()),
      /credential helper docker-credential-missing not found in PATH/,
    );
  });

  it("refuses a config.json that is not JSON", async () => {
    await writeFile(join(dir, "config.json"), "{nope");
    await assert.rejects(
      loadCredentials("reg.example", where, env()),
      (err: unknown) => err instanceof UserError && /config\.json is not valid JSON/.test(err.message),
    );
  });
});
