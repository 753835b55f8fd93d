import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseWwwAuthenticate } from "./auth.js";

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
