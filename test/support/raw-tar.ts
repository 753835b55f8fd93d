// Tar archives written byte by byte, for what a tar library will not write: NUL bytes in PAX
// names, raw non-UTF-8 bytes, out-of-range numbers, unknown typeflags, sparse maps.

export interface RawMember {
  /** Name bytes as they go in the header's name field (at most 100). */
  name: string | Buffer;
  /** Typeflag character; "0" for a regular file. */
  type?: string;
  body?: string | Buffer;
  /** Overrides the size field (defaults to the body's length). */
  size?: number;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  linkname?: string | Buffer;
  /** "ustar" (POSIX, default) or "gnu". */
  magic?: "ustar" | "gnu";
  /** Edits the block before its checksum is computed (GNU sparse fields and the like). */
  edit?: (block: Buffer) => void;
}

const bytes = (v: string | Buffer) => (typeof v === "string" ? Buffer.from(v) : v);

export function octalField(block: Buffer, at: number, len: number, v: number) {
  block.write(`${v.toString(8).padStart(len - 1, "0")}\0`, at, len, "latin1");
}

export function rawHeader(m: RawMember): Buffer {
  const b = Buffer.alloc(512);
  bytes(m.name).copy(b, 0, 0, 100);
  const body = m.body === undefined ? Buffer.alloc(0) : bytes(m.body);
  octalField(b, 100, 8, m.mode ?? 0o644);
  octalField(b, 108, 8, m.uid ?? 0);
  octalField(b, 116, 8, m.gid ?? 0);
  octalField(b, 124, 12, m.size ?? body.length);
  octalField(b, 136, 12, m.mtime ?? 1_600_000_000);
  b.write(m.type ?? "0", 156, 1, "latin1");
  if (m.linkname !== undefined) bytes(m.linkname).copy(b, 157, 0, 100);
  if (m.magic === "gnu") b.write("ustar  \0", 257, "latin1");
  else b.write("ustar\x0000", 257, "latin1");
  m.edit?.(b);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "latin1");
  return b;
}

/** A PAX extended header body: "%d key=value\n" records. */
export function paxBody(records: [string | Buffer, string | Buffer][]): Buffer {
  return Buffer.concat(
    records.map(([k, v]) => {
      const rest = Buffer.concat([Buffer.from(" "), bytes(k), Buffer.from("="), bytes(v), Buffer.from("\n")]);
      let len = rest.length + 1;
      while (String(len).length + rest.length !== len) len++;
      return Buffer.concat([Buffer.from(String(len)), rest]);
    }),
  );
}

/** A PAX 'x' member for the member that follows it. */
export function paxMember(records: [string, string | Buffer][]): RawMember {
  return { name: "PaxHeaders/x", type: "x", body: paxBody(records) };
}

/** Members with their bodies padded to 512 bytes, then the two zero blocks. */
export function rawTar(members: RawMember[]): Buffer {
  const parts: Buffer[] = [];
  for (const m of members) {
    const body = m.body === undefined ? Buffer.alloc(0) : bytes(m.body);
    parts.push(rawHeader(m), body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}
