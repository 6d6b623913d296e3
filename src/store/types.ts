import type { Readable } from 'node:stream';
import { ExitCode, InterruptedError, RegbackupError } from '../errors.js';

/**
 * The one interface every storage provider implements (filesystem, S3 and S3-compatible, Google Cloud
 * Storage). Deliberately small: retry and metrics are decorators around it (src/store/retry.ts, metrics.ts),
 * never flags inside it. Writing to several targets at once is not a store: the repository's Fanout
 * (src/repo/fanout.ts) holds one store per target.
 *
 * Keys are relative names such as `data/3f/3f0a…` ("/"-separated, no leading "/", no "." or ".." segments);
 * a provider adds its own prefix. Objects are immutable: regbackup never overwrites an object, so a
 * provider need not offer conditional writes. No key may also be a "directory" of other keys (`a` and `a/b`):
 * the filesystem store cannot hold both; regbackup's key layout never needs it.
 *
 * Cancellation: put, get, getBuffer and list take an optional AbortSignal (the operations that can run long;
 * stat and delete are single short requests, bounded by the provider's timeouts). When it aborts, the
 * operation stops promptly and rejects (a returned get stream, or a list, fails) with StoreAbortedError;
 * an aborted put leaves no object and nothing partial behind.
 */
export interface ObjectStore {
  /** A short name for messages: the target's name from the configuration. */
  readonly name: string;
  /** Human description of where it stores, without credentials (e.g. `s3://bucket/prefix/`). */
  readonly location: string;

  /**
   * Stores an object. `body` is a Buffer, a local file, or a stream whose total length is `size` when known
   * (large objects stream: multipart / resumable uploads, bounded memory). The object appears atomically: a
   * reader never sees a partial object under `key`. The retry decorator retries Buffer and LocalFile bodies
   * (they can be read again), never a stream (it cannot be rewound).
   */
  put(key: string, body: PutBody, opts?: PutOptions): Promise<void>;

  /**
   * Reads an object, or the byte range [offset, offset+length). Throws ObjectNotFoundError if absent (the
   * promise rejects; the stream is only returned once the object is known to exist). A range reaching past
   * the end is cut at the end (a range starting at or after the end gives no bytes): callers that need an
   * exact length check it. Errors after the stream was returned (a connection reset mid-body) arrive as
   * stream errors and are not retried by the retry decorator.
   */
  get(key: string, range?: ByteRange, opts?: SignalOptions): Promise<Readable>;

  /** Reads an object (or a range) fully into memory. For small objects and ranges only. */
  getBuffer(key: string, range?: ByteRange, opts?: SignalOptions): Promise<Buffer>;

  /** Size and modification time, or undefined if the object does not exist. */
  stat(key: string): Promise<ObjectInfo | undefined>;

  /** Every object whose key starts with `prefix`, in lexicographic key order, paginated internally. */
  list(prefix: string, opts?: SignalOptions): AsyncIterable<ObjectInfo>;

  /** Deletes an object; deleting an absent object is not an error. */
  delete(key: string): Promise<void>;

  /**
   * Releases what the store holds (sockets, HTTP agents, file handles). Idempotent. Afterwards every
   * operation rejects with StoreClosedError; a stream already returned by get is not cut.
   */
  close(): Promise<void>;
}

/**
 * A file on this host to store as the object (a sealed pack in the spool): a filesystem target on the same
 * filesystem takes it by hard link (no copy); the other providers stream it. Unlike a stream, a retry can
 * read it again.
 */
export interface LocalFile {
  file: string;
  size: number;
  /** A filesystem store may take the file by hard link (only one store may: the copies must be independent). */
  link?: boolean;
}

export type PutBody = Buffer | Readable | LocalFile;

export function isLocalFile(b: PutBody): b is LocalFile {
  return (
    !Buffer.isBuffer(b) &&
    typeof (b as LocalFile).file === 'string' &&
    typeof (b as LocalFile).size === 'number'
  );
}

export interface ByteRange {
  offset: number;
  length: number;
}

export interface SignalOptions {
  /** Aborts the operation (see ObjectStore: "Cancellation"). */
  signal?: AbortSignal;
}

export interface PutOptions extends SignalOptions {
  /** Total length of a streamed body, when known. */
  size?: number;
  contentType?: string;
  /** Object retention (S3 Object Lock / GCS object retention): the object cannot be deleted before it. */
  retainUntil?: Date;
}

export interface ObjectInfo {
  key: string;
  size: number;
  mtime?: Date;
  /** Provider's storage class, when it reports one. */
  storageClass?: string;
  /** Retention date, when the provider reports one. */
  retainUntil?: Date;
  /** The provider's entity tag (S3 ETag, GCS md5/etag), when it reports one. */
  etag?: string;
}

/**
 * Thrown by get/getBuffer for an object that does not exist. A RegbackupError so that, when it reaches the
 * operator (a pack named by the index is gone), it exits with the integrity status, not as an internal error.
 */
export class ObjectNotFoundError extends RegbackupError {
  readonly code = 'E_NOT_FOUND';
  readonly exitCode = ExitCode.integrity;
  constructor(
    readonly store: string,
    readonly key: string,
  ) {
    super(`target ${store}: object ${key} does not exist`, { target: store, key });
  }
}

/**
 * An operation stopped because its AbortSignal aborted (Ctrl-C, a job cancelled). Named AbortError, like
 * the platform's own; an InterruptedError, so that it exits with the interrupted status. Never retried.
 */
export class StoreAbortedError extends InterruptedError {
  constructor(
    readonly store: string,
    readonly operation: string,
    readonly key: string,
    reason?: unknown,
  ) {
    super(
      `target ${store}: ${operation} ${key || '(everything)'} aborted`,
      { target: store, operation, key },
      reason === undefined ? undefined : { cause: reason },
    );
    this.name = 'AbortError';
  }
}

/** An operation on a store after its close(): a bug in the caller. */
export class StoreClosedError extends Error {
  readonly code = 'E_STORE_CLOSED';
  constructor(readonly store: string) {
    super(`target ${store}: the store is closed`);
    this.name = 'StoreClosedError';
  }
}

/**
 * Throws StoreAbortedError when `signal` has aborted. Every store checks this before it starts an operation
 * and between the steps of a long one.
 */
export function throwIfAborted(
  signal: AbortSignal | undefined,
  store: string,
  operation: string,
  key: string,
): void {
  if (signal?.aborted) throw new StoreAbortedError(store, operation, key, signal.reason);
}

/**
 * Validates an object key: relative, "/"-separated, no empty, "." or ".." segment, no NUL or backslash,
 * printable ASCII only. Every store calls this before touching its backend.
 */
export function assertValidKey(key: string): void {
  if (
    key.length === 0 ||
    key.length > 512 ||
    key.startsWith('/') ||
    key.endsWith('/') ||
    !/^[\x21-\x7e]+$/.test(key) ||
    key.includes('\\') ||
    key.split('/').some((s) => s === '' || s === '.' || s === '..')
  ) {
    throw new Error(`invalid object key ${JSON.stringify(key)}`);
  }
}

/** A list prefix may be empty or end with "/", and otherwise follows the key rules. */
export function assertValidPrefix(prefix: string): void {
  if (prefix === '') return;
  assertValidKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
}
