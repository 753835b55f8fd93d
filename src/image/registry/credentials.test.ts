import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { EnvironmentError, UserError } from "../../util/errors.js";
import { loadCredentials } from "./credentials.js";

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
      assert.match(err.message, /^docker:\/\/example\/x: docker-credential-fake get: invalid JSON/);
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
      (err: unknown) =>
        err instanceof UserError && /config\.json: invalid JSON \(at byte 1\)$/.test(err.message),
    );
  });

  it("refuses a config.json of the wrong shape, naming the file and the field, never the secret", async () => {
    for (const [json, field] of [
      ["null", /config\.json: the document must be object$/],
      ['{"auths": []}', /config\.json: auths must be object$/],
      ['{"auths": {"reg.example": {"auth": 42}}}', /config\.json: auths\.reg\.example\.auth must be string$/],
      ['{"credHelpers": {"reg.example": null}}', /must be string$/],
    ] as const) {
      await writeFile(join(dir, "config.json"), json);
      await assert.rejects(loadCredentials("reg.example", where, env()), (err: unknown) => {
        assert.ok(err instanceof UserError, String(err));
        assert.match(err.message, field);
        assert.ok(err.message.startsWith(`${where}: ${join(dir, "config.json")}: `), err.message);
        return true;
      });
    }
    // V8 quotes the text around a JSON syntax error; the message must not carry it.
    await writeFile(join(dir, "config.json"), '{"auths":{"r":{"auth":"c2VjcmV0OnB3"}}} x');
    await assert.rejects(loadCredentials("reg.example", where, env()), (err: unknown) => {
      assert.ok(err instanceof UserError);
      assert.doesNotMatch(err.message, /c2VjcmV0/);
      return true;
    });
  });
});
