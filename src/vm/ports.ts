import { createSocket } from "node:dgram";
import { createServer } from "node:net";
import { UserError } from "../util/errors.js";

/** One `-p [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]` forward. */
export interface PortForward {
  proto: "tcp" | "udp";
  hostAddr: string;
  hostPort: number;
  guestPort: number;
}

/** A port is free to listen on here, or already taken (by whom we cannot tell). */
export class PortInUseError extends Error {}

function port(text: string, spec: string): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= 1 && n <= 65535)) throw new UserError(`-p ${spec}: ${text} is not a port number (1-65535)`);
  return n;
}

/** Parses `8080:80`, `127.0.0.1:8080:80`, `5353:53/udp`; the host side defaults to 127.0.0.1. */
export function parsePortForward(spec: string): PortForward {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?([^:/]+):([^:/]+)(?:\/(tcp|udp))?$/.exec(spec);
  if (!m) throw new UserError(`-p ${spec}: expected [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]`);
  return {
    proto: (m[4] as "tcp" | "udp" | undefined) ?? "tcp",
    hostAddr: m[1] ?? "127.0.0.1",
    hostPort: port(m[2]!, spec),
    guestPort: port(m[3]!, spec),
  };
}

/** QEMU user networking's spelling: `hostfwd=tcp:127.0.0.1:8080-:80`. */
export function hostfwd(f: PortForward): string {
  return `hostfwd=${f.proto}:${f.hostAddr}:${f.hostPort}-:${f.guestPort}`;
}

/**
 * Binds each host port for a moment, so a port that is taken is reported as such before
 * QEMU starts (QEMU would only say it could not set up a forwarding rule).
 */
export async function checkPortsFree(forwards: readonly PortForward[]): Promise<void> {
  const seen = new Set<string>();
  for (const f of forwards) {
    const key = `${f.proto}:${f.hostAddr}:${f.hostPort}`;
    if (seen.has(key))
      throw new UserError(`-p: host port ${f.hostAddr}:${f.hostPort}/${f.proto} given twice`);
    seen.add(key);
    await (f.proto === "tcp" ? bindTcp(f) : bindUdp(f));
  }
}

function explain(f: PortForward, err: NodeJS.ErrnoException): Error {
  const where = `${f.hostAddr}:${f.hostPort}/${f.proto}`;
  if (err.code === "EADDRINUSE") return new PortInUseError(`host port ${where} is already in use`);
  if (err.code === "EACCES") return new PortInUseError(`host port ${where}: permission denied`);
  if (err.code === "EADDRNOTAVAIL")
    return new PortInUseError(`host address ${f.hostAddr} is not on this machine`);
  return new PortInUseError(`host port ${where}: ${err.message}`);
}

function bindTcp(f: PortForward): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", (err: NodeJS.ErrnoException) => reject(explain(f, err)));
    // exclusive: a listener of our own cluster would otherwise share the port silently.
    server.listen({ host: f.hostAddr, port: f.hostPort, exclusive: true }, () =>
      server.close(() => resolve()),
    );
  });
}

function bindUdp(f: PortForward): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = createSocket("udp4");
    sock.once("error", (err: NodeJS.ErrnoException) => {
      sock.close();
      reject(explain(f, err));
    });
    sock.bind({ address: f.hostAddr, port: f.hostPort, exclusive: true }, () => sock.close(() => resolve()));
  });
}
