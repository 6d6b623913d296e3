import pLimit, { type LimitFunction } from 'p-limit';
import { IntegrityError, KeyError, RegbackupError, TargetError, messageOf } from '../src/errors.js';
import { log } from '../src/log.js';
import { cipherRange, type OpenedAge } from '../src/repo/age.js';
import type { BlobIndex, BlobLocation } from '../src/repo/blob-index.js';
import { packKey } from '../src/repo/pack.js';
import type { FallbackEvent, BlobReader } from '../src/repo/reader.js';
import type { Repository } from '../src/repo/repository.js';
import { chunkIds, validateRef, type StreamRef } from '../src/repo/stream-ref.js';
import type { ObjectStore } from '../src/store/types.js';
import type { RunBlob } from './crypto.js';
import { PackHeaders } from '../src/repo/pack-headers.js';
import { CryptoPool } from './pool.js';

/** Blobs of one pack closer than this are read in one request (the bytes between are read and dropped). */
const GAP = 256 * 1024;
/** At most this much plaintext per request. */
const MAX_RUN = 8 * 1024 * 1024;

interface Need {
  id: Buffer;
  hex: string;
  loc: BlobLocation;
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
  promise: Promise<Buffer>;
  /** Why the previous target could not serve it (for the fallback record). */
  lastError?: string;
  /** Some target failed for another reason than "no identity opens the pack". */
  notKey?: boolean;
}

export interface FetcherOptions {
  /**
   * Worker threads that decrypt and verify (default 0: on the calling thread). Restores into CouchDB are
   * bound by the server, and a worker's garbage (decrypted segments) costs tens of MB before it is collected.
   */
  workers?: number;
  /** Range requests in flight. Default 6. */
  concurrency?: number;
}

/**
 * Reads data blobs for a restore, fast: the blobs asked for together are grouped by pack and read with as few
 * range requests as possible (neighbouring blobs of a pack in one request), decrypted and verified — keyed ID,
 * as BlobReader does — in worker threads. A target that lacks a pack or serves bytes that fail verification
 * is passed over for the next one, blob by blob, and every such fallback is recorded.
 */
export class BlobFetcher {
  /** The first fallbacks (at most 1000: a target that lost everything would make millions). */
  readonly fallbacks: FallbackEvent[] = [];
  fallbackCount = 0;
  /** Ciphertext bytes read from targets. */
  bytesRead = 0;
  requests = 0;
  private readonly inflight = new Map<string, Need>();
  private readonly headers: PackHeaders;
  private readonly limit: LimitFunction;
  private readonly pool: CryptoPool;

  constructor(
    readonly repo: Repository,
    readonly index: BlobIndex,
    readonly stores: readonly ObjectStore[],
    /** Reads tree blobs (indirect chunk lists). */
    private readonly treeReader: BlobReader,
    opts: FetcherOptions = {},
  ) {
    if (!repo.identities) throw new KeyError('reading backed-up content needs the restore identity');
    this.headers = new PackHeaders(repo, () => this.requests++);
    this.limit = pLimit(Math.max(1, opts.concurrency ?? 6));
    this.pool = new CryptoPool(opts.workers ?? 0, repo.idKey);
  }

  locate(id: Buffer): BlobLocation {
    const loc = this.index.lookup(id);
    if (!loc) throw this.repo.blobNotIndexed(id);
    return loc;
  }

  /** Asks for blobs; returns the promise of each one's verified bytes, in the order asked. */
  want(ids: readonly Buffer[]): Promise<Buffer>[] {
    const byPack = new Map<number, Need[]>();
    const out: Promise<Buffer>[] = [];
    for (const id of ids) {
      const hex = id.toString('hex');
      let need = this.inflight.get(hex);
      if (!need) {
        const loc = this.locate(id);
        let resolve!: (b: Buffer) => void;
        let reject!: (e: Error) => void;
        const promise = new Promise<Buffer>((res, rej) => {
          resolve = res;
          reject = rej;
        });
        promise.catch(() => undefined); // the caller awaits it; this only keeps an early failure from being "unhandled"
        need = { id: Buffer.from(id), hex, loc, resolve, reject, promise };
        this.inflight.set(hex, need);
        const n = need;
        void promise.then(
          () => this.inflight.delete(hex),
          () => this.inflight.delete(hex),
        );
        let group = byPack.get(loc.packNo);
        if (!group) byPack.set(loc.packNo, (group = []));
        group.push(n);
      }
      out.push(need.promise);
    }
    for (const group of byPack.values()) {
      group.sort((a, b) => a.loc.offset - b.loc.offset);
      let run: Need[] = [];
      for (const n of group) {
        const first = run[0];
        const last = run[run.length - 1];
        if (
          first &&
          last &&
          (n.loc.offset - (last.loc.offset + last.loc.length) > GAP ||
            n.loc.offset + n.loc.length - first.loc.offset > MAX_RUN)
        ) {
          this.schedule(run);
          run = [];
        }
        run.push(n);
      }
      if (run.length) this.schedule(run);
    }
    return out;
  }

  /** One blob. */
  read(id: Buffer): Promise<Buffer> {
    return this.want([id])[0]!;
  }

  /**
   * A stream's bytes in order, asking for up to `ahead` chunks at a time; checks the total size. For big
   * streams (attachments, tarballs of many chunks): memory stays at `ahead` chunks.
   */
  async *stream(ref: StreamRef, ahead = 8): AsyncGenerator<Buffer> {
    validateRef(ref);
    const window: Promise<Buffer>[] = [];
    let group: Buffer[] = [];
    let size = 0;
    const flush = () => {
      if (group.length) window.push(...this.want(group));
      group = [];
    };
    for await (const id of chunkIds(this.treeReader, ref)) {
      group.push(Buffer.from(id));
      if (group.length >= Math.max(1, ahead >> 1)) flush();
      while (window.length >= ahead) {
        const b = await window.shift()!;
        size += b.length;
        yield b;
      }
    }
    flush();
    while (window.length) {
      const b = await window.shift()!;
      size += b.length;
      yield b;
    }
    if (size !== ref.size)
      throw new IntegrityError(`stream is ${size} bytes, its reference says ${ref.size}`);
  }

  /** A whole (small) stream in memory. */
  async readAll(ref: StreamRef, maxSize = 256 * 1024 * 1024): Promise<Buffer> {
    if (ref.size > maxSize)
      throw new IntegrityError(`stream of ${ref.size} bytes is larger than allowed here`);
    const parts: Buffer[] = [];
    for await (const b of this.stream(ref)) parts.push(b);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  private schedule(run: Need[]): void {
    void this.limit(() => this.fetchRun(run, 0)).catch((err: unknown) => {
      const e = err instanceof Error ? err : new Error(String(err));
      for (const n of run) n.reject(e);
    });
  }

  /** The age header of a pack on a target (read once, cached): its payload key and where the payload starts. */
  packHeader(store: ObjectStore, key: string): Promise<OpenedAge> {
    return this.headers.get(store, key);
  }

  /** Reads the blobs of `run` (one pack) from target `at`; what fails there goes on to the next target. */
  private async fetchRun(run: Need[], at: number): Promise<void> {
    const store = this.stores[at]!;
    const pack = run[0]!.loc.pack;
    const key = packKey(pack.type, pack.id);
    const failed: Need[] = [];
    try {
      const opened = await this.headers.get(store, key);
      const lo = run[0]!.loc.offset;
      let hi = lo;
      for (const n of run) hi = Math.max(hi, n.loc.offset + n.loc.length);
      const { start, end, firstSegment } = cipherRange(opened, pack.size, lo, hi - lo);
      const cipher = await store.getBuffer(key, { offset: start, length: end - start });
      this.requests++;
      this.bytesRead += cipher.length;
      const blobs: RunBlob[] = run.map((n) => ({
        offset: n.loc.offset,
        length: n.loc.length,
        rawLength: n.loc.rawLength,
        compression: n.loc.compression,
        type: n.loc.type,
      }));
      const ids = Buffer.concat(run.map((n) => n.id));
      const result = await this.pool.run({
        key: opened.key,
        cipher,
        firstSegment,
        reachesEnd: end === pack.size && cipher.length === end - start,
        blobs,
        ids,
      });
      run.forEach((n, i) => {
        const r = result.blobs[i]!;
        if (typeof r === 'string') {
          n.lastError = `blob ${n.hex.slice(0, 16)}… in pack ${pack.id} on ${store.name}: ${r}`;
          n.notKey = true;
          failed.push(n);
        } else {
          this.served(n, at);
          n.resolve(Buffer.from(result.buffers[r[0]]!, r[1], r[2]));
        }
      });
    } catch (err) {
      // A pack no identity opens may be a forgery on this target: the next is tried. A wrong identity
      // fails the same way on every target, and is then the error.
      if (!(err instanceof RegbackupError)) throw err;
      for (const n of run) {
        n.lastError = messageOf(err);
        if (!(err instanceof KeyError)) n.notKey = true;
        failed.push(n);
      }
    }
    if (!failed.length) return;
    if (at + 1 < this.stores.length) {
      await this.fetchRun(failed, at + 1);
      return;
    }
    for (const n of failed) {
      const what = `blob ${n.hex} (pack ${pack.id})`;
      n.reject(
        !n.notKey
          ? new KeyError(`${what}: ${n.lastError}`)
          : /does not exist|unreachable|cannot reach|timed out|ECONN/i.test(n.lastError ?? '')
            ? new TargetError(`${what} cannot be read from any target: ${n.lastError}`)
            : new IntegrityError(`${what} cannot be read intact from any target: ${n.lastError}`),
      );
    }
  }

  private served(n: Need, at: number): void {
    if (at === 0 || n.lastError === undefined) return;
    const ev: FallbackEvent = {
      blob: n.hex,
      pack: n.loc.pack.id,
      from: this.stores[at - 1]!.name,
      to: this.stores[at]!.name,
      reason: n.lastError,
    };
    this.fallbackCount++;
    if (this.fallbacks.length < 1000) this.fallbacks.push(ev);
    if (this.fallbackCount <= 20)
      log().warn(
        { blob: n.hex.slice(0, 12), from: ev.from, to: ev.to, reason: ev.reason },
        'read from another target',
      );
  }
}
