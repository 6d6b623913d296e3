import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  Storage,
  type Bucket,
  type CreateWriteStreamOptions,
  type FileMetadata,
} from '@google-cloud/storage';
import { classify, displayEndpoint, toTargetError, type StoreOperation } from './errors.js';
import { gcsLocation, normalizePrefix } from './location.js';
import {
  assertValidRange,
  deferErrors,
  emptyStream,
  mapStreamErrors,
  readAll,
  whenReadable,
} from './streams.js';
import {
  ObjectNotFoundError,
  isLocalFile,
  type PutBody,
  assertValidKey,
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
      if (Buffer.isBuffer(body)) {
        await file.save(body, { ...options, resumable: body.length > this.resumableThreshold });
      } else if (isLocalFile(body)) {
        await pipeline(
          createReadStream(body.file),
          file.createWriteStream({ ...options, resumable: body.size > this.resumableThreshold }),
        );
      } else {
        const resumable = opts.size === undefined || opts.size > this.resumableThreshold;
        await pipeline(body, file.createWriteStream({ ...options, resumable }));
      }
    } catch (err) {
      // 412: the object exists. Names are content hashes or random, so it holds these very bytes (a
      // concurrent copy, a retried request that had succeeded).
      if ((err as { code?: unknown }).code === 412) return;
      throw this.fail(err, 'put', key);
    }
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    const file = this.bucket.file(this.keyOf(key));
    assertValidRange(range);
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
      // The library sends the request on the first read: wait for it, so that "not found" rejects here.
      await whenReadable(src);
      return mapStreamErrors(src, (err) => this.fail(err, 'get', key));
    } catch (err) {
      if (range && classify(err).status === 416) return emptyStream();
      throw this.fail(err, 'get', key);
    }
  }

  async getBuffer(key: string, range?: ByteRange): Promise<Buffer> {
    return readAll(await this.get(key, range));
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

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    assertValidPrefix(prefix);
    let pageToken: string | undefined;
    do {
      let files, next;
      try {
        [files, next] = await this.bucket.getFiles({
          prefix: this.prefix + prefix,
          autoPaginate: false,
          maxResults: this.pageSize,
          ...(pageToken ? { pageToken } : {}),
        });
      } catch (err) {
        throw this.fail(err, 'list', prefix);
      }
      for (const f of files) {
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

  private keyOf(key: string): string {
    assertValidKey(key);
    return this.prefix + key;
  }

  private fail(err: unknown, operation: StoreOperation, key: string): Error {
    if (err instanceof ObjectNotFoundError) return err;
    const f = classify(err);
    if (f.kind === 'not-found' && (operation === 'get' || operation === 'stat')) {
      return new ObjectNotFoundError(this.name, key);
    }
    return toTargetError(err, {
      target: this.name,
      operation,
      key,
      endpoint: this.endpoint,
      container: 'bucket',
    });
  }
}
