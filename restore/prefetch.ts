import { IntegrityError } from '../src/errors.js';
import type { StreamRef } from '../src/repo/stream-ref.js';
import type { BlobFetcher } from './fetch.js';

/**
 * The bytes of one stored stream on their way to a destination: the blobs were asked for in advance (small
 * streams) or are read as they are consumed (big ones). Iterate it once.
 */
export class StreamBytes implements AsyncIterable<Buffer> {
  constructor(
    readonly ref: StreamRef,
    private readonly fetcher: BlobFetcher,
    /** The chunks, already asked for; undefined: read on demand. */
    public parts?: Promise<Buffer>[],
  ) {}

  get size(): number {
    return this.ref.size;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    if (!this.parts) {
      yield* this.fetcher.stream(this.ref);
      return;
    }
    let size = 0;
    const parts = this.parts;
    this.parts = undefined; // let the buffers go as they are consumed
    for (let i = 0; i < parts.length; i++) {
      const b = await parts[i]!;
      parts[i] = undefined as unknown as Promise<Buffer>;
      size += b.length;
      yield b;
    }
    if (size !== this.ref.size)
      throw new IntegrityError(`stream is ${size} bytes, its reference says ${this.ref.size}`);
  }

  /** The whole stream in memory (for bodies and small files). */
  async all(): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const b of this) parts.push(b);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }
}

export interface Prefetched<T> {
  item: T;
  /** One per reference returned by `refsOf`, in that order. */
  streams: StreamBytes[];
}

export interface PrefetchOptions {
  /** Bytes of content asked for ahead of the consumer (default 32 MiB). */
  aheadBytes?: number;
  /** Bytes asked for in one go, so that blobs of one pack are read together (default 8 MiB). */
  batchBytes?: number;
  /** Streams bigger than this are not asked for ahead, but read as consumed (default 4 MiB). */
  bigStream?: number;
}

/**
 * Walks `src` ahead of its consumer and asks the fetcher for the blobs of the next items in batches, so that
 * neighbouring blobs in a pack are read with one request and decryption runs ahead of the writes. Memory:
 * `aheadBytes` of content plus what the consumer holds.
 */
export async function* prefetch<T>(
  src: AsyncIterable<T>,
  refsOf: (item: T) => StreamRef[],
  fetcher: BlobFetcher,
  opts: PrefetchOptions = {},
): AsyncGenerator<Prefetched<T>> {
  const ahead = opts.aheadBytes ?? 32 * 1024 * 1024;
  const batchLimit = opts.batchBytes ?? 8 * 1024 * 1024;
  const big = opts.bigStream ?? 4 * 1024 * 1024;
  const it = src[Symbol.asyncIterator]();
  const queue: { p: Prefetched<T>; bytes: number }[] = [];
  let queued = 0;
  let done = false;
  let pending: { s: StreamBytes; ids: Buffer[] }[] = [];
  let pendingBytes = 0;
  const flush = () => {
    if (!pending.length) return;
    const all = pending.flatMap((p) => p.ids);
    const promises = fetcher.want(all);
    let at = 0;
    for (const p of pending) {
      p.s.parts = promises.slice(at, at + p.ids.length);
      at += p.ids.length;
    }
    pending = [];
    pendingBytes = 0;
  };
  for (;;) {
    // Refill in bulk (below half the budget) so that batches are big enough to group blobs by pack.
    if (!done && queued < ahead / 2) {
      while (!done && queued < ahead) {
        const r = await it.next();
        if (r.done) {
          done = true;
          break;
        }
        let bytes = 0;
        const streams = refsOf(r.value).map((ref) => {
          const s = new StreamBytes(ref, fetcher);
          if (ref.chunks && ref.size <= big) {
            s.parts = [];
            pending.push({ s, ids: ref.chunks.map((c) => Buffer.from(c, 'hex')) });
            pendingBytes += ref.size;
            bytes += ref.size;
          }
          return s;
        });
        queue.push({ p: { item: r.value, streams }, bytes });
        queued += bytes;
        if (pendingBytes >= batchLimit) flush();
      }
      flush();
    }
    const head = queue.shift();
    if (!head) return;
    queued -= head.bytes;
    yield head.p;
  }
}
