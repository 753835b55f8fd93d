import assert from "node:assert/strict";
import { createServer } from "node:net";
import { test } from "node:test";
import { UserError } from "../util/errors.js";
import { checkPortsFree, hostfwd, PortInUseError, parsePortForward } from "./ports.js";

test("-p specs", () => {
  assert.deepEqual(parsePortForward("8080:80"), {
    proto: "tcp",
    hostAddr: "127.0.0.1",
    hostPort: 8080,
    guestPort: 80,
  });
  assert.deepEqual(parsePortForward("0.0.0.0:53:5353/udp"), {
    proto: "udp",
    hostAddr: "0.0.0.0",
    hostPort: 53,
    guestPort: 5353,
  });
  assert.equal(hostfwd(parsePortForward("8080:80")), "hostfwd=tcp:127.0.0.1:8080-:80");
  for (const bad of ["80", "a:b", "0:80", "70000:80", "8080:80/sctp", "::1:80:80"]) {
    assert.throws(() => parsePortForward(bad), UserError, bad);
  }
});

test("a taken port is reported before anything starts", async () => {
  const server = createServer();
  await new Promise<void>((r) => server.listen({ host: "127.0.0.1", port: 0 }, r));
  const port = (server.address() as { port: number }).port;
  try {
    await assert.rejects(
      checkPortsFree([parsePortForward(`${port}:80`)]),
      (err: Error) =>
        err instanceof PortInUseError && err.message === `host port 127.0.0.1:${port}/tcp is already in use`,
    );
  } finally {
    server.close();
  }
  await checkPortsFree([parsePortForward(`${port}:80`)]);
  await assert.rejects(
    checkPortsFree([parsePortForward(`${port}:80`), parsePortForward(`${port}:81`)]),
    /given twice/,
  );
});
