/** Thrown when the stream ends inside something that needed more bytes. */
export class TruncatedError extends Error {}

/**
 * A source that can pass over bytes without reading them (a file): `seek(n)` moves past up to
 * n bytes not yet yielded and says how many there were.
 */
export interface Seekable {
  seek(n: number): number;
}

/**
 * Pulls exact byte counts out of a stream of chunks (an archive being parsed), or streams a
 * run of bytes through without joining them. `offset` counts the bytes taken so far.
 */
export class ByteReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private readonly it: AsyncIterator<Buffer>;
  private readonly seekable?: Seekable;
  offset = 0;

  constructor(stream: (AsyncIterable<Buffer> | Iterable<Buffer>) & Partial<Seekable>) {
    if (typeof stream.seek === "function") this.seekable = stream as Seekable;
    this.it =
      Symbol.asyncIterator in stream
        ? stream[Symbol.asyncIterator]()
        : (async function* () {
            yield* stream;
          })();
  }

  private async fill(): Promise<boolean> {
    const next = await this.it.next();
    if (next.done) return false;
    const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
    if (chunk.length) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    return true;
  }

  /** Exactly n bytes, or null at a clean end of stream before the first byte. */
  async read(n: number): Promise<Buffer | null> {
    while (this.buffered < n) {
      if (!(await this.fill())) {
        if (this.buffered === 0) return null;
        throw new TruncatedError(`truncated at byte ${this.offset + this.buffered}`);
      }
    }
    this.buffered -= n;
    this.offset += n;
    const first = this.chunks[0]!;
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    // Only the n bytes asked for are copied out: joining every buffered chunk copied a whole
    // decompressed chunk (256 KiB) for each tar header that straddled a chunk boundary.
    const out = Buffer.allocUnsafe(n);
    for (let at = 0; at < n; ) {
      const piece = this.chunks[0]!;
      const used = Math.min(piece.length, n - at);
      piece.copy(out, at, 0, used);
      at += used;
      if (used === piece.length) this.chunks.shift();
      else this.chunks[0] = piece.subarray(used);
    }
    return out;
  }

  /** Exactly n bytes; the end of the stream is an error. */
  async must(n: number): Promise<Buffer> {
    if (n === 0) return Buffer.alloc(0);
    const b = await this.read(n);
    if (!b) throw new TruncatedError(`truncated at byte ${this.offset}`);
    return b;
  }

  /** The next n bytes as they arrive, without joining chunks. */
  async *stream(n: number): AsyncGenerator<Buffer> {
    while (n > 0) {
      if (this.buffered === 0 && !(await this.fill()))
        throw new TruncatedError(`truncated at byte ${this.offset}`);
      if (this.buffered === 0) continue;
      const first = this.chunks[0]!;
      const take = Math.min(n, first.length);
      if (take === first.length) this.chunks.shift();
      else this.chunks[0] = first.subarray(take);
      this.buffered -= take;
      this.offset += take;
      n -= take;
      yield take === first.length ? first : first.subarray(0, take);
    }
  }

  async skip(n: number): Promise<void> {
    if ((await this.skipSome(n)) < n) throw new TruncatedError(`truncated at byte ${this.offset}`);
  }

  /** Passes over up to n bytes (seeking when the source can); fewer only at the end of the stream. */
  async skipSome(n: number): Promise<number> {
    let done = 0;
    while (done < n) {
      if (this.buffered === 0) {
        const moved = this.seekable?.seek(n - done) ?? 0;
        done += moved;
        this.offset += moved;
        if (done === n || !(await this.fill())) break;
        continue;
      }
      const first = this.chunks[0]!;
      const take = Math.min(n - done, first.length);
      if (take === first.length) this.chunks.shift();
      else this.chunks[0] = first.subarray(take);
      this.buffered -= take;
      this.offset += take;
      done += take;
    }
    return done;
  }

  /** Reads and drops the rest of the stream (so whatever checks it at its end gets to run). */
  async drain(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    this.seekable?.seek(Number.POSITIVE_INFINITY);
    while (await this.fill()) {
      this.offset += this.buffered;
      this.chunks = [];
      this.buffered = 0;
    }
  }
}
