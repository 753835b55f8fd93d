import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { type AddressInfo, createServer as createNetServer } from "node:net";
import { test } from "node:test";
import { UserError } from "../util/errors.js";
import type { PortForward } from "../vm/ports.js";
import { decodeTracePath, GuestReport } from "../vm/report.js";
import { TraceCollector } from "./console-trace.js";
import { imagePathOf } from "./paths.js";
import { attemptProbe, parseProbe, portMap, probeForwards, probePorts } from "./probe.js";
import {
  decodeProfile,
  encodeProfile,
  mergeProfiles,
  profileCommandMismatch,
  profileDigestMismatch,
  profileProbes,
  RECORDER,
} from "./profile.js";

test("probe specs", () => {
  assert.deepEqual(parseProbe("http:80"), { kind: "http", spec: "http:80", port: 80, path: "/" });
  assert.deepEqual(parseProbe("http:8080/a/b?c=d"), {
    kind: "http",
    spec: "http:8080/a/b?c=d",
    port: 8080,
    path: "/a/b?c=d",
  });
  assert.deepEqual(parseProbe("tcp:6379"), { kind: "tcp", spec: "tcp:6379", port: 6379 });
  assert.deepEqual(parseProbe("tcp:6379:PING\\r\\n:PONG"), {
    kind: "tcp",
    spec: "tcp:6379:PING\\r\\n:PONG",
    port: 6379,
    send: "PING\r\n",
    expect: "PONG",
  });
  assert.equal((parseProbe("tcp:1:a\\:b:c") as { send: string }).send, "a:b");
  const exec = parseProbe(
    "exec:redis-cli -p $SLIMROOT_PORT_6379 ping; echo $SLIMROOT_PORT_80 $SLIMROOT_PORT_6379",
  );
  assert.deepEqual(probePorts(exec), [6379, 80]);
  for (const bad of ["http", "http:x", "http:0/", "ftp:21", "tcp:1:a:b:c", "exec:", "exec:  ", "80"]) {
    assert.throws(() => parseProbe(bad), UserError, bad);
  }
  assert.throws(() => parseProbe("gopher:70"), /--probe gopher:70: expected http:PORT/);
});

test("an http: probe leaves no connection open in the app (kept alive, it ended up in snapshots)", async () => {
  let open = 0;
  const server = createServer((_req, res) => res.end("ok"));
  server.on("connection", (sock) => {
    open++;
    sock.on("close", () => open--);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const port = (server.address() as AddressInfo).port;
    assert.equal(await attemptProbe(parseProbe("http:80/"), new Map([[80, port]])), undefined);
    const deadline = Date.now() + 2000;
    while (open > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(open, 0, "the probe's connection is still open");
  } finally {
    server.close();
  }
});

test("an exec: probe's attempt ends at once on its signal, and what its command started goes with it", async () => {
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 200);
  const t = Date.now();
  // The shell waits on a sleep it started: killing the shell alone left the sleep holding the attempt.
  const why = await attemptProbe(parseProbe("exec:sleep 30.4242 & sleep 31.4242; true"), new Map(), {
    signal: ac.signal,
  });
  assert.notEqual(why, undefined);
  assert.ok(Date.now() - t < 3000, `${Date.now() - t} ms`);
  await new Promise((r) => setTimeout(r, 100));
  const left = spawnSync("pgrep", ["-f", "sleep 3[01].4242"]).stdout.toString().trim();
  assert.equal(left, "", "the probe's processes are gone");
});

test("an attempt with its signal already aborted ends at once, of every kind", async () => {
  const ac = new AbortController();
  ac.abort();
  for (const spec of ["exec:sleep 30.4243", "tcp:80:hi:HELLO", "tcp:80", "http:80/"]) {
    const t = Date.now();
    const why = await attemptProbe(parseProbe(spec), new Map([[80, 9]]), { signal: ac.signal });
    assert.notEqual(why, undefined, spec);
    assert.ok(Date.now() - t < 2000, `${spec}: ${Date.now() - t} ms`);
  }
});

test("a tcp: probe waiting for EXPECT gives up after attemptMs; an app that never answers holds it no longer", async () => {
  const server = createNetServer(() => {}); // accepts, never answers
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const port = (server.address() as AddressInfo).port;
    const t = Date.now();
    const why = await attemptProbe(parseProbe("tcp:80:hi:HELLO"), new Map([[80, port]]), { attemptMs: 300 });
    assert.match(why ?? "", /no "HELLO" within 0\.3 s/);
    assert.ok(Date.now() - t < 2000, `${Date.now() - t} ms`);
  } finally {
    server.close();
  }
});

test("a -p on another address than 127.0.0.1 gets a loopback forward for the probe beside it", async () => {
  const user: PortForward[] = [{ proto: "tcp", hostAddr: "127.0.0.2", hostPort: 18080, guestPort: 80 }];
  const all = await probeForwards([parseProbe("http:80/")], user);
  assert.equal(all.length, 2);
  assert.deepEqual(all[0], user[0]);
  const ours = all[1]!;
  assert.equal(ours.hostAddr, "127.0.0.1");
  assert.deepEqual([...portMap(all)], [[80, ours.hostPort]]);
  // One on 127.0.0.1 (or every address) is used as it is.
  const lo: PortForward[] = [{ proto: "tcp", hostAddr: "0.0.0.0", hostPort: 18081, guestPort: 80 }];
  assert.deepEqual(await probeForwards([parseProbe("http:80/")], lo), lo);
  assert.deepEqual([...portMap(lo)], [[80, 18081]]);
});

test("trace lines: the init's escapes undone, taken only inside the keyed report", async () => {
  assert.equal(decodeTracePath("/a\\\\b\\nc\\x09d\\x7f"), "/a\\b\nc\td\x7f");
  assert.equal(decodeTracePath("/caf\xc3\xa9"), "/café", "UTF-8 bytes come through the console as latin1");
  assert.equal(decodeTracePath("/x\\q"), "/x\\q", "an unknown escape stays as written");
  const report = new GuestReport();
  const c = new TraceCollector();
  const lines = [
    "[    1.2] kernel noise",
    "app says hi",
    "SLIMROOT_TRACE /forged/by/the/app",
    "SLIMROOT_TRACE_LOST 99",
    "SLIMROOT_TRACE_RECORDER ptrace",
    `SLIMROOT_REPORT ${"0".repeat(32)}`,
    `partial output SLIMROOT_REPORT ${report.key}`,
    "SLIMROOT_TRACE /usr/bin/app",
    "SLIMROOT_TRACE /etc/a\\nb",
    "SLIMROOT_TRACE ? /etc/missing",
    "SLIMROOT_TRACE_RECORDER seccomp",
    "SLIMROOT_TRACE_LOST 3",
    "SLIMROOT_EXIT=0",
    "SLIMROOT_TRACE /after/the/end",
  ];
  // split across writes, with the tty's CRLF line ends
  const text = `${lines.join("\r\n")}\r\n`;
  for (let i = 0; i < text.length; i += 7) c.write(Buffer.from(text.slice(i, i + 7), "latin1"));
  await new Promise<void>((r) => c.end(r));
  report.scan(text);
  assert.deepEqual(report.traced, ["/usr/bin/app", "/etc/a\nb", "? /etc/missing"]);
  assert.equal(report.lost, 3);
  assert.equal(report.recorder, "seccomp");
  assert.equal(report.exitCode, 0);
  assert.equal(c.lastLine(), "app says hi");
});

test("guest paths to image paths", () => {
  assert.equal(imagePathOf("/usr/bin/app"), "usr/bin/app");
  for (const p of [
    "/",
    "/proc/self/maps",
    "/dev/null",
    "/sys/x",
    "/init",
    "/etc/slimroot/app.conf",
    "/a/../b",
  ]) {
    assert.equal(imagePathOf(p), undefined, p);
  }
  assert.equal(imagePathOf("/etc/slimroot.conf"), "etc/slimroot.conf");
  assert.equal(imagePathOf("/runner/x"), "runner/x");
});

test("profile header round trip, probes as JSON", () => {
  const text = encodeProfile({ header: { probes: JSON.stringify(["http:80/", "exec:a b"]) }, paths: ["x"] });
  const p = decodeProfile(text, "f");
  assert.deepEqual(profileProbes(p, "f", true), ["http:80/", "exec:a b"]);
  assert.deepEqual(profileProbes({ header: {}, paths: [] }, "f"), []);
  const odd = ["data/a\nb", "data/back\\slash\\n", "plain"];
  assert.deepEqual(
    decodeProfile(encodeProfile({ header: {}, paths: odd }), "f").paths.sort(),
    [...odd].sort(),
  );
  assert.throws(() => profileProbes({ header: { probes: "[1]" }, paths: [] }, "f"), /f: the probes header/);
});

test("a profile's exec: probe is refused unless allowed; http: and tcp: pass", () => {
  const of = (probes: string[]) => ({ header: { probes: JSON.stringify(probes) }, paths: [] });
  assert.deepEqual(profileProbes(of(["http:80/", "tcp:6379:PING\\r\\n:PONG"]), "f"), [
    "http:80/",
    "tcp:6379:PING\\r\\n:PONG",
  ]);
  for (const bad of ["exec:touch /tmp/owned", "exec :id", "EXEC:id", "file:/etc/passwd"])
    assert.throws(
      () => profileProbes(of(["http:80/", bad]), "p.profile"),
      (err: Error) =>
        err instanceof UserError &&
        /^p\.profile: refusing the profile's probe .*limited to http: and tcp:.*--allow-profile-exec/.test(
          err.message,
        ),
    );
  assert.deepEqual(profileProbes(of(["exec:true"]), "f", true), ["exec:true"]);
});

test("a profile recorded for another command is named in a warning", () => {
  const p = decodeProfile(
    '# slimroot profile v1\n# command: ["/usr/bin/redis-server","--bind","0.0.0.0"]\n/usr/bin/redis-server\n',
    "r.profile",
  );
  assert.equal(
    profileCommandMismatch(p, "r.profile", ["/usr/bin/redis-server", "--bind", "0.0.0.0"]),
    undefined,
  );
  assert.match(
    profileCommandMismatch(p, "r.profile", ["/usr/bin/redis-server"]) ?? "",
    /^r\.profile was recorded for \["\/usr\/bin\/redis-server","--bind","0.0.0.0"\], this image runs \["\/usr\/bin\/redis-server"\]/,
  );
  assert.equal(
    profileCommandMismatch(decodeProfile("# slimroot profile v1\n/a\n", "x"), "x", ["/a"]),
    undefined,
  );
});

test("a profile's lookups and listings round-trip; several profiles merge into their union", () => {
  const a = decodeProfile(
    encodeProfile({
      header: { probes: JSON.stringify(["http:80/"]), recorder: RECORDER, digest: "sha256:a" },
      paths: ["etc/x", "odd\nname"],
      listed: ["etc"],
      missing: ["/etc/y.conf", "/made/later"],
    }),
    "a",
  );
  assert.deepEqual(a.paths, ["etc/x", "odd\nname"]);
  assert.deepEqual(a.listed, ["etc"]);
  assert.deepEqual(a.missing, ["/etc/y.conf", "/made/later"]);
  assert.equal(a.lookups, true);
  const b = decodeProfile(
    `# slimroot profile v1\n# probes: ["http:80/","tcp:81"]\n# recorder: ${RECORDER}\n/made/later\nL /var\n`,
    "b",
  );
  const u = mergeProfiles([a, b]);
  assert.deepEqual(u.paths.sort(), ["etc/x", "made/later", "odd\nname"]);
  assert.deepEqual(u.listed, ["etc", "var"]);
  assert.deepEqual(u.missing, ["/etc/y.conf"], "found in one trace: no failed lookup");
  assert.deepEqual(profileProbes(u, "u"), ["http:80/", "tcp:81"]);
  assert.equal(u.lookups, true);
  // A fanotify-only profile in the mix: the rules for its blind spots must run.
  const old = mergeProfiles([a, decodeProfile("# slimroot profile v1\n/bin/sh\n", "old")]);
  assert.equal(old.lookups, false);
  assert.equal(decodeProfile(encodeProfile(old), "o").lookups, false);
  assert.match(
    profileDigestMismatch(a, "a.profile", "sha256:b") ?? "",
    /^a\.profile was made for image sha256:a, this image is sha256:b/,
  );
  assert.equal(profileDigestMismatch(a, "a.profile", "sha256:a"), undefined);
  assert.equal(profileDigestMismatch(b, "b.profile", "sha256:b"), undefined);
});
