import type { Readable } from 'node:stream';
import { StoreDecorator } from './decorator.js';
import type { StoreOperation } from './errors.js';
import { ByteCounter, readAll } from './streams.js';
import {
  ObjectNotFoundError,
  StoreAbortedError,
  isLocalFile,
  type SignalOptions,
  type PutBody,
  type ByteRange,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
} from './types.js';

export const STORE_OPERATIONS: readonly StoreOperation[] = ['put', 'get', 'stat', 'list', 'delete'];

export interface StoreMetricsSnapshot {
  /** Requests started, by operation (a list counts once, however many pages). */
  requests: Record<StoreOperation, number>;
  /** Requests that failed, by operation. A get of a missing object is not an error (it is an answer). */
  errors: Record<StoreOperation, number>;
  /** Body bytes sent by put. */
  bytesUp: number;
  /** Body bytes received by get/getBuffer. */
  bytesDown: number;
}

const zero = (): Record<StoreOperation, number> => ({ put: 0, get: 0, stat: 0, list: 0, delete: 0 });

/** Counters of one target. Plain numbers for now; the Prometheus exporter reads snapshot(). */
export class StoreMetrics {
  private readonly requests = zero();
  private readonly errors = zero();
  private bytesUp = 0;
  private bytesDown = 0;

  request(op: StoreOperation): void {
    this.requests[op]++;
  }

  error(op: StoreOperation): void {
    this.errors[op]++;
  }

  up(n: number): void {
    this.bytesUp += n;
  }

  down(n: number): void {
    this.bytesDown += n;
  }

  snapshot(): StoreMetricsSnapshot {
    return {
      requests: { ...this.requests },
      errors: { ...this.errors },
      bytesUp: this.bytesUp,
      bytesDown: this.bytesDown,
    };
  }
}

/**
 * Counts requests, errors and body bytes of the store it wraps. Placed inside the retry decorator, it
 * counts every attempt (what the provider bills), not just the calls made to the store.
 */
export class MeteredStore extends StoreDecorator {
  constructor(
    inner: ObjectStore,
    readonly metrics: StoreMetrics = new StoreMetrics(),
  ) {
    super(inner);
  }

  override async put(key: string, body: PutBody, opts?: PutOptions): Promise<void> {
    let sent: PutBody = body;
    if (Buffer.isBuffer(body)) {
      this.metrics.up(body.length);
    } else if (isLocalFile(body)) {
      this.metrics.up(body.size);
    } else {
      const counter = new ByteCounter((n) => this.metrics.up(n));
      body.once('error', (err) => counter.destroy(err));
      sent = body.pipe(counter);
    }
    return this.count('put', () => this.inner.put(key, sent, opts));
  }

  override async get(key: string, range?: ByteRange, opts?: SignalOptions): Promise<Readable> {
    const stream = await this.count('get', () => this.inner.get(key, range, opts));
    const counter = new ByteCounter((n) => this.metrics.down(n));
    stream.once('error', (err) => {
      if (isFailure(err)) this.metrics.error('get');
      counter.destroy(err);
    });
    counter.once('close', () => {
      if (!stream.destroyed) stream.destroy();
    });
    return stream.pipe(counter);
  }

  override async getBuffer(key: string, range?: ByteRange, opts?: SignalOptions): Promise<Buffer> {
    // Through get(), so that a provider's own getBuffer cannot bypass the byte count.
    return readAll(await this.get(key, range, opts));
  }

  override stat(key: string): Promise<ObjectInfo | undefined> {
    return this.count('stat', () => this.inner.stat(key));
  }

  override delete(key: string): Promise<void> {
    return this.count('delete', () => this.inner.delete(key));
  }

  override async *list(prefix: string, opts?: SignalOptions): AsyncIterable<ObjectInfo> {
    this.metrics.request('list');
    try {
      yield* this.inner.list(prefix, opts);
    } catch (err) {
      if (isFailure(err)) this.metrics.error('list');
      throw err;
    }
  }

  private async count<T>(op: StoreOperation, fn: () => Promise<T>): Promise<T> {
    this.metrics.request(op);
    try {
      return await fn();
    } catch (err) {
      if (isFailure(err)) this.metrics.error(op);
      throw err;
    }
  }
}

/** A missing object is an answer, an aborted operation the caller's choice: neither is a provider error. */
function isFailure(err: unknown): boolean {
  return !(err instanceof ObjectNotFoundError) && !(err instanceof StoreAbortedError);
}

export function withMetrics(store: ObjectStore, metrics?: StoreMetrics): MeteredStore {
  return new MeteredStore(store, metrics);
}
