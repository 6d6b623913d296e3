import type { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { TargetError, messageOf } from '../errors.js';
import { StoreDecorator } from './decorator.js';
import { classify, type StoreOperation } from './errors.js';
import { untilAborted } from './streams.js';
import {
  StoreAbortedError,
  isLocalFile,
  throwIfAborted,
  type ByteRange,
  type ObjectInfo,
  type ObjectStore,
  type PutBody,
  type PutOptions,
  type SignalOptions,
} from './types.js';

export interface RetryOptions {
  /** Attempts in all, the first included (default 5). 1 disables retrying. */
  attempts?: number;
  /** The backoff before retry n is a random delay in [0, min(maxDelayMs, baseDelayMs·2^(n-1))] (default 200). */
  baseDelayMs?: number;
  /** Upper bound of one backoff (default 20 s). */
  maxDelayMs?: number;
  /** Called before each retry (for logs). */
  onRetry?: (info: RetryInfo) => void;
  /** Tests: the clock and the dice. The sleep may end early when `signal` aborts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
}

export interface RetryInfo {
  target: string;
  operation: StoreOperation;
  key: string;
  /** The attempt that failed (1 = the first). */
  attempt: number;
  delayMs: number;
  error: unknown;
}

/**
 * Retries transient failures (network errors, HTTP 5xx, 408, 429, provider throttling) with exponential
 * backoff and full jitter; never a 4xx, a missing object, an authentication failure or an aborted operation.
 *
 * What can be retried:
 * - put with a Buffer or a LocalFile body: yes (the bytes can be sent again). put with a stream body: NO —
 *   a stream cannot be rewound, so the one attempt is all there is (the provider SDKs still retry individual
 *   parts of a multipart/resumable upload). Callers that want retries for large objects pass a LocalFile
 *   (e.g. a sealed pack in the spool) or a Buffer.
 * - get: the request is retried until the body starts; a failure in the middle of the body is a stream
 *   error for the caller. getBuffer is retried as a whole.
 * - list: a failed page restarts the listing and skips the keys already returned (lexicographic order).
 * - stat, delete: yes (both idempotent).
 * An operation's AbortSignal also cuts a backoff short: the operation rejects with StoreAbortedError.
 */
export class RetryingStore extends StoreDecorator {
  private readonly attempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly random: () => number;
  private readonly onRetry: ((info: RetryInfo) => void) | undefined;

  constructor(inner: ObjectStore, opts: RetryOptions = {}) {
    super(inner);
    this.attempts = Math.max(1, Math.floor(opts.attempts ?? 5));
    this.baseDelayMs = Math.max(0, opts.baseDelayMs ?? 200);
    this.maxDelayMs = Math.max(0, opts.maxDelayMs ?? 20_000);
    // With the signal, so that an aborted operation leaves no timer keeping the process alive.
    this.sleep = opts.sleep ?? ((ms, signal) => delay(ms, undefined, signal ? { signal } : {}));
    this.random = opts.random ?? Math.random;
    this.onRetry = opts.onRetry;
  }

  override put(key: string, body: PutBody, opts?: PutOptions): Promise<void> {
    // A stream cannot be rewound: one attempt. Buffers and local files can be sent again.
    if (!Buffer.isBuffer(body) && !isLocalFile(body)) return this.inner.put(key, body, opts);
    return this.retry('put', key, () => this.inner.put(key, body, opts), opts?.signal);
  }

  override get(key: string, range?: ByteRange, opts?: SignalOptions): Promise<Readable> {
    return this.retry('get', key, () => this.inner.get(key, range, opts), opts?.signal);
  }

  override getBuffer(key: string, range?: ByteRange, opts?: SignalOptions): Promise<Buffer> {
    return this.retry('get', key, () => this.inner.getBuffer(key, range, opts), opts?.signal);
  }

  override stat(key: string): Promise<ObjectInfo | undefined> {
    return this.retry('stat', key, () => this.inner.stat(key));
  }

  override delete(key: string): Promise<void> {
    return this.retry('delete', key, () => this.inner.delete(key));
  }

  override async *list(prefix: string, opts?: SignalOptions): AsyncIterable<ObjectInfo> {
    let last: string | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        for await (const info of this.inner.list(prefix, opts)) {
          // A restarted listing skips what was returned already; a first one passes everything through
          // (a provider that lists out of byte order, like s3rver, would otherwise lose keys).
          if (attempt > 1 && last !== undefined && info.key <= last) continue;
          last = info.key;
          yield info;
        }
        return;
      } catch (err) {
        await this.backoffOrThrow('list', prefix, attempt, err, opts?.signal);
      }
    }
  }

  private async retry<T>(
    operation: StoreOperation,
    key: string,
    fn: () => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        await this.backoffOrThrow(operation, key, attempt, err, signal);
      }
    }
  }

  /** Returns after the backoff if `err` deserves another attempt; throws otherwise. */
  private async backoffOrThrow(
    operation: StoreOperation,
    key: string,
    attempt: number,
    err: unknown,
    signal?: AbortSignal,
  ): Promise<void> {
    if (!classify(err).transient) throw err;
    throwIfAborted(signal, this.name, operation, key);
    if (attempt >= this.attempts) throw this.gaveUp(operation, key, attempt, err);
    const cap = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (attempt - 1));
    const delayMs = Math.floor(this.random() * cap);
    this.onRetry?.({ target: this.name, operation, key, attempt, delayMs, error: err });
    await untilAborted(
      this.sleep(delayMs, signal),
      signal,
      () => new StoreAbortedError(this.name, operation, key, signal?.reason),
    );
  }

  private gaveUp(operation: StoreOperation, key: string, attempts: number, err: unknown): Error {
    if (attempts === 1) return err instanceof Error ? err : new Error(messageOf(err));
    const last =
      err instanceof TargetError
        ? err.message
        : `target ${this.name}: ${operation} ${key}: ${messageOf(err)}`;
    const details = err instanceof TargetError ? err.details : { target: this.name, operation, key };
    return new TargetError(
      `${last} (gave up after ${attempts} attempts)`,
      { ...details, attempts },
      { cause: err },
    );
  }
}

export function withRetry(store: ObjectStore, opts?: RetryOptions): ObjectStore {
  return new RetryingStore(store, opts);
}
