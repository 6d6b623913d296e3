import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  Storage,
  type Bucket,
  type CreateWriteStreamOptions,
  type FileMetadata,
} from '@google-cloud/storage';
import { classify, displayEndpoint, storeError, type StoreOperation } from './errors.js';
import { gcsLocation, keyOf, normalizePrefix } from './location.js';
import {
  assertValidRange,
  deferErrors,
  destroyOnAbort,
  emptyStream,
  mapStreamErrors,
  readAll,
  untilAborted,
  whenReadable,
} from './streams.js';
import {
  ObjectNotFoundError,
  StoreAbortedError,
  StoreClosedError,
  isLocalFile,
  throwIfAborted,
  type PutBody,
  type SignalOptions,
  assertValidPrefix,
  type ByteRange,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
} from './types.js';

export interface GcsStoreOptions {
  /** The target's name, for messages. */
  name: string;
  bucket: string;
  /** Prepended to every key ("a/b" and "a/b/" are the same). */
  prefix?: string;
  projectId?: string;
  /** A service-account JSON key; absent: Application Default Credentials. */
  keyFilename?: string;
  /** Another JSON API endpoint (tests, private service connect). */
  apiEndpoint?: string;
  /** Storage class of new objects; absent or STANDARD: the bucket's default class. */
  storageClass?: string;
  /** Object retention mode for puts that carry `retainUntil` (the bucket must allow object retention). */
  retentionMode?: 'Locked' | 'Unlocked';
  /** Objects per list page (default 1000). Smaller only for tests. */
  pageSize?: number;
  /** Streamed bodies larger than this (or of unknown size) use a resumable upload. Default 8 MiB. */
  resumableThreshold?: number;
  /** Retries the library itself makes per request (default 3). */
  maxRetries?: number;
  /** Tests: another Storage client. */
  storage?: Storage;
}

const MiB = 1024 * 1024;

/**
 * Google Cloud Storage through @google-cloud/storage v7 (JSON API). Buffers go up in one simple upload;
 * streams of unknown or large size through a resumable upload (the library streams it: bounded memory).
 *
 * Cancellation: the library takes no AbortSignal, so an aborted operation destroys its streams (the upload
 * stream: its request is cut and the upload never completes, so no object appears; the download stream)
 * and stops waiting for a list page. close() has no socket of its own to end: the library keeps its
 * connections in one process-wide keep-alive pool (teeny-request's), shared with every other GCS store,
 * whose idle sockets do not keep the process alive; the store only refuses further operations.
 */
export class GcsStore implements ObjectStore {
  readonly name: string;
  readonly location: string;
  private readonly bucket: Bucket;
  private readonly prefix: string;
  private readonly endpoint: string;
  private readonly storageClass: string | undefined;
  private readonly retentionMode: 'Locked' | 'Unlocked';
  private readonly pageSize: number;
  private readonly resumableThreshold: number;
  private closed = false;

  constructor(opts: GcsStoreOptions) {
    this.name = opts.name;
    this.prefix = normalizePrefix(opts.prefix);
    this.endpoint = opts.apiEndpoint ? displayEndpoint(opts.apiEndpoint) : 'https://storage.googleapis.com';
    this.location = gcsLocation(opts);
    this.storageClass = opts.storageClass && opts.storageClass !== 'STANDARD' ? opts.storageClass : undefined;
    this.retentionMode = opts.retentionMode ?? 'Unlocked';
    this.pageSize = Math.max(1, Math.min(1000, opts.pageSize ?? 1000));
    this.resumableThreshold = opts.resumableThreshold ?? 8 * MiB;
    const storage =
      opts.storage ??
      new Storage({
        ...(opts.projectId ? { projectId: opts.projectId } : {}),
        ...(opts.keyFilename ? { keyFilename: opts.keyFilename } : {}),
        ...(opts.apiEndpoint ? { apiEndpoint: opts.apiEndpoint } : {}),
        retryOptions: { autoRetry: (opts.maxRetries ?? 3) > 0, maxRetries: opts.maxRetries ?? 3 },
      });
    this.bucket = storage.bucket(opts.bucket);
  }

  async put(key: string, body: PutBody, opts: PutOptions = {}): Promise<void> {
    const file = this.bucket.file(this.keyOf(key));
    const { signal } = opts;
    throwIfAborted(signal, this.name, 'put', key);
    if (!Buffer.isBuffer(body) && !isLocalFile(body)) deferErrors(body);
    const metadata: FileMetadata = {};
    if (this.storageClass) metadata.storageClass = this.storageClass;
    if (opts.retainUntil) {
      metadata.retention = { mode: this.retentionMode, retainUntilTime: opts.retainUntil.toISOString() };
    }
    // Create-only (ifGenerationMatch 0): objects are immutable, and without a precondition the client turns
    // retries off for the whole Storage instance.
    const options: CreateWriteStreamOptions = { metadata, preconditionOpts: { ifGenerationMatch: 0 } };
    if (opts.contentType) options.contentType = opts.contentType;
    try {
      if (Buffer.isBuffer(body) && !signal) {
        await file.save(body, { ...options, resumable: body.length > this.resumableThreshold });
      } else {
        // With a signal, a Buffer goes through the same stream as the others (save() cannot be cut short).
        const [source, size] = Buffer.isBuffer(body)
          ? [Readable.from([body], { objectMode: false }), body.length]
          : isLocalFile(body)
            ? [createReadStream(body.file), body.size]
            : [body, opts.size];
        const resumable = size === undefined || size > this.resumableThreshold;
        const upload = file.createWriteStream({ ...options, resumable });
        // The upload stream too: its request is cut, so the object is never completed.
        const aborted = () => new StoreAbortedError(this.name, 'put', key, signal?.reason);
        destroyOnAbort(source, signal, aborted);
        destroyOnAbort(upload, signal, aborted);
        await pipeline(source, upload);
      }
    } catch (err) {
      // 412: the object exists. Names are content hashes or random, so it holds these very bytes (a
      // concurrent copy, a retried request that had succeeded).
      if (!signal?.aborted && (err as { code?: unknown }).code === 412) return;
      throw this.fail(err, 'put', key, signal);
    }
  }

  async get(key: string, range?: ByteRange, opts: SignalOptions = {}): Promise<Readable> {
    const file = this.bucket.file(this.keyOf(key));
    const { signal } = opts;
    assertValidRange(range);
    throwIfAborted(signal, this.name, 'get', key);
    if (range && range.length === 0) {
      if (!(await this.stat(key))) throw new ObjectNotFoundError(this.name, key);
      return emptyStream();
    }
    try {
      // `end` is inclusive. A ranged read cannot be checked against the object's checksum.
      const src = range
        ? file.createReadStream({
            start: range.offset,
            end: range.offset + range.length - 1,
            validation: false,
          })
        : file.createReadStream();
      const aborted = () => new StoreAbortedError(this.name, 'get', key, signal?.reason);
      destroyOnAbort(src, signal, aborted);
      // The library sends the request on the first read: wait for it, so that "not found" rejects here.
      await whenReadable(src);
      const out = mapStreamErrors(src, (err) => this.fail(err, 'get', key, signal));
      destroyOnAbort(out, signal, aborted);
      return out;
    } catch (err) {
      if (range && !signal?.aborted && classify(err).status === 416) return emptyStream();
      throw this.fail(err, 'get', key, signal);
    }
  }

  async getBuffer(key: string, range?: ByteRange, opts?: SignalOptions): Promise<Buffer> {
    return readAll(await this.get(key, range, opts));
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const file = this.bucket.file(this.keyOf(key));
    try {
      const [md] = await file.getMetadata();
      return this.info(key, md);
    } catch (err) {
      if (classify(err).kind === 'not-found') return undefined;
      throw this.fail(err, 'stat', key);
    }
  }

  async *list(prefix: string, opts: SignalOptions = {}): AsyncIterable<ObjectInfo> {
    const { signal } = opts;
    this.assertOpen();
    assertValidPrefix(prefix);
    const aborted = () => new StoreAbortedError(this.name, 'list', prefix, signal?.reason);
    let pageToken: string | undefined;
    do {
      let files, next;
      try {
        [files, next] = await untilAborted(
          this.bucket.getFiles({
            prefix: this.prefix + prefix,
            autoPaginate: false,
            maxResults: this.pageSize,
            ...(pageToken ? { pageToken } : {}),
          }),
          signal,
          aborted,
        );
      } catch (err) {
        throw this.fail(err, 'list', prefix, signal);
      }
      for (const f of files) {
        throwIfAborted(signal, this.name, 'list', prefix);
        if (!f.name.startsWith(this.prefix)) continue;
        yield this.info(f.name.slice(this.prefix.length), f.metadata);
      }
      pageToken = (next as { pageToken?: string } | null | undefined)?.pageToken;
    } while (pageToken);
  }

  async delete(key: string): Promise<void> {
    const file = this.bucket.file(this.keyOf(key));
    try {
      await file.delete({ ignoreNotFound: true });
    } catch (err) {
      throw this.fail(err, 'delete', key);
    }
  }

  private info(key: string, md: FileMetadata): ObjectInfo {
    const info: ObjectInfo = { key, size: Number(md.size ?? 0) };
    if (md.updated) info.mtime = new Date(md.updated);
    if (md.storageClass) info.storageClass = md.storageClass;
    if (md.retention?.retainUntilTime) info.retainUntil = new Date(md.retention.retainUntilTime);
    return info;
  }

  /** Idempotent; see the class comment for the library's sockets. */
  async close(): Promise<void> {
    this.closed = true;
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreClosedError(this.name);
  }

  /** The object's name in the bucket; also the check that the store is still open. */
  private keyOf(key: string): string {
    this.assertOpen();
    return keyOf(this.prefix, key);
  }

  private fail(err: unknown, operation: StoreOperation, key: string, signal?: AbortSignal): Error {
    const ctx = { target: this.name, operation, key, endpoint: this.endpoint, container: 'bucket' };
    return storeError(err, ctx, signal);
  }
}
