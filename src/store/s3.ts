import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type PutObjectCommandInput,
  type S3ClientConfig,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { TargetError } from '../errors.js';
import { nameProblem, showName } from '../repo/names.js';
import { keyOf, normalizePrefix, s3Location } from './location.js';
import { classify, displayEndpoint, storeError, type StoreOperation } from './errors.js';
import {
  assertValidRange,
  deferErrors,
  destroyOnAbort,
  emptyStream,
  mapStreamErrors,
  readAll,
  sliceStream,
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

export interface S3StoreOptions {
  /** The target's name, for messages. */
  name: string;
  bucket: string;
  /** Prepended to every key ("backups/registry" and "backups/registry/" are the same). */
  prefix?: string;
  region?: string;
  /** An S3-compatible provider's endpoint (MinIO, R2, B2, Wasabi, Ceph); absent: AWS. */
  endpoint?: string;
  forcePathStyle?: boolean;
  /** Static credentials; absent: the AWS SDK's default chain (environment, profile, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Storage class of new objects; absent or STANDARD: the provider's default (no header sent). */
  storageClass?: string;
  /**
   * S3 Object Lock mode for puts that carry `retainUntil`. The bucket must have Object Lock enabled.
   * Default GOVERNANCE (an administrator with s3:BypassGovernanceRetention can still delete).
   */
  objectLockMode?: 'GOVERNANCE' | 'COMPLIANCE';
  /**
   * A bucket of source files (a tarball store), not a repository: its keys are the source's names, checked by
   * the name rule of the snapshots (src/repo/names.ts) instead of the repository's object-key rule.
   */
  sourceKeys?: boolean;
  /** Keys per ListObjectsV2 page (1–1000, default 1000). Smaller only for tests. */
  pageSize?: number;
  /**
   * Multipart part size for streamed bodies (≥ 5 MiB; default 8 MiB; at most 10,000 parts, so 8 MiB parts
   * allow 78 GiB). Memory per streamed upload: a few parts (see the class comment).
   */
  partSize?: number;
  /** Parts uploaded in parallel per streamed body (default 2). */
  queueSize?: number;
  /** Attempts the SDK itself makes per request (default 3; it retries parts of multipart uploads too). */
  maxAttempts?: number;
  /** Connection timeout in ms (default 10 s) and socket idle timeout in ms (default 2 min). */
  connectionTimeout?: number;
  requestTimeout?: number;
  /** Tests: another client (its configuration then overrides all connection options above). */
  client?: S3Client;
}

const MiB = 1024 * 1024;
/** Local files up to this size go in one PutObject (S3's limit is 5 GiB). */
const SINGLE_PUT_MAX = 1024 * MiB;

/**
 * Amazon S3 and S3-compatible providers, through @aws-sdk/client-s3. Buffers go up in one PutObject;
 * streams through lib-storage's Upload (multipart beyond one part; memory bounded, not proportional to the
 * body: about 5 parts at the peak, as it copies chunks and concatenates parts, plus request bodies the SDK
 * keeps referenced for a moment after sending).
 * Ranged reads send `Range: bytes=a-b` (never suffix ranges: several compatible providers get them wrong).
 * An AbortSignal goes to the SDK with each request; an aborted streamed upload stops reading its body and
 * lib-storage aborts the multipart upload (AbortMultipartUpload) before put rejects. close() destroys the
 * client (its sockets), unless the client was passed in (`client`): its owner closes it.
 */
export class S3Store implements ObjectStore {
  readonly name: string;
  readonly location: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly endpoint: string;
  private readonly storageClass: StorageClass | undefined;
  private readonly lockMode: 'GOVERNANCE' | 'COMPLIANCE';
  private readonly pageSize: number;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly sourceKeys: boolean;
  private readonly ownsClient: boolean;
  private closed = false;

  constructor(opts: S3StoreOptions) {
    this.name = opts.name;
    this.sourceKeys = Boolean(opts.sourceKeys);
    this.bucket = opts.bucket;
    this.prefix = normalizePrefix(opts.prefix);
    const region = opts.region ?? 'us-east-1';
    this.endpoint = opts.endpoint ? displayEndpoint(opts.endpoint) : `https://s3.${region}.amazonaws.com`;
    this.location = s3Location(opts);
    this.storageClass =
      opts.storageClass && opts.storageClass !== 'STANDARD' ? (opts.storageClass as StorageClass) : undefined;
    this.lockMode = opts.objectLockMode ?? 'GOVERNANCE';
    this.pageSize = Math.max(1, Math.min(1000, opts.pageSize ?? 1000));
    this.partSize = Math.max(5 * MiB, opts.partSize ?? 8 * MiB);
    this.queueSize = Math.max(1, opts.queueSize ?? 2);
    this.ownsClient = !opts.client;
    if (opts.client) {
      this.client = opts.client;
    } else {
      const config: S3ClientConfig = {
        region,
        forcePathStyle: opts.forcePathStyle ?? false,
        maxAttempts: opts.maxAttempts ?? 3,
        requestHandler: {
          connectionTimeout: opts.connectionTimeout ?? 10_000,
          requestTimeout: opts.requestTimeout ?? 120_000,
        },
      };
      if (opts.endpoint) {
        config.endpoint = opts.endpoint;
        // Compatible providers (and s3rver) do not all understand the flexible-checksum trailers that newer
        // SDKs send by default; send checksums only where the API requires them.
        config.requestChecksumCalculation = 'WHEN_REQUIRED';
        config.responseChecksumValidation = 'WHEN_REQUIRED';
      }
      if (opts.credentials) config.credentials = opts.credentials;
      this.client = new S3Client(config);
    }
  }

  async put(key: string, body: PutBody, opts: PutOptions = {}): Promise<void> {
    const params: PutObjectCommandInput = { Bucket: this.bucket, Key: this.keyOf(key) };
    const { signal } = opts;
    const aborted = () => new StoreAbortedError(this.name, 'put', key, signal?.reason);
    throwIfAborted(signal, this.name, 'put', key);
    if (!Buffer.isBuffer(body) && !isLocalFile(body)) deferErrors(body);
    if (opts.contentType) params.ContentType = opts.contentType;
    if (this.storageClass) params.StorageClass = this.storageClass;
    if (opts.retainUntil) {
      params.ObjectLockMode = this.lockMode;
      params.ObjectLockRetainUntilDate = opts.retainUntil;
      // Object Lock requires an integrity checksum on the request, whatever the client's checksum policy.
      params.ChecksumAlgorithm = 'CRC32';
    }
    const send = signal ? { abortSignal: signal } : {};
    try {
      if (Buffer.isBuffer(body)) {
        await this.client.send(
          new PutObjectCommand({ ...params, Body: body, ContentLength: body.length }),
          send,
        );
      } else if (isLocalFile(body) && body.size <= SINGLE_PUT_MAX) {
        // One PUT streamed from the file: no part buffers in memory (a pack is ~16 MiB; S3 takes 5 GiB).
        // The client may never read the stream (a refused connection): its errors (the file removed
        // meanwhile) wait for a reader, and it is closed in any case.
        // Opened first: a file that is gone fails the put here, at once.
        const file = (await open(body.file)).createReadStream();
        deferErrors(file);
        try {
          await this.client.send(
            new PutObjectCommand({ ...params, Body: file, ContentLength: body.size }),
            send,
          );
        } finally {
          file.destroy();
        }
      } else {
        // Multipart. On abort the body stops (destroyed): lib-storage then aborts the multipart upload
        // (leavePartsOnError false) and only afterwards rejects, so no part outlives the put.
        const stream = isLocalFile(body) ? createReadStream(body.file) : body;
        deferErrors(stream);
        destroyOnAbort(stream, signal, aborted);
        try {
          await new Upload({
            client: this.client,
            params: { ...params, Body: stream },
            partSize: this.partSize,
            queueSize: this.queueSize,
            leavePartsOnError: false,
          }).done();
        } finally {
          // Our own file's stream is closed whatever happened (a caller's stream is the caller's).
          if (isLocalFile(body)) stream.destroy();
        }
      }
    } catch (err) {
      throw this.fail(err, 'put', key, signal);
    }
  }

  async get(key: string, range?: ByteRange, opts: SignalOptions = {}): Promise<Readable> {
    const k = this.keyOf(key);
    const { signal } = opts;
    assertValidRange(range);
    throwIfAborted(signal, this.name, 'get', key);
    if (range && range.length === 0) {
      if (!(await this.stat(key))) throw new ObjectNotFoundError(this.name, key);
      return emptyStream();
    }
    try {
      const res = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: k,
          Range: range ? `bytes=${range.offset}-${range.offset + range.length - 1}` : undefined,
        }),
        signal ? { abortSignal: signal } : {},
      );
      if (!(res.Body instanceof Readable))
        throw new Error('the S3 client returned a body that is not a Node stream');
      let body: Readable = res.Body;
      if (range) body = this.exactRange(body, range, res.$metadata.httpStatusCode, res.ContentRange, key);
      const out = mapStreamErrors(body, (err) => this.fail(err, 'get', key, signal));
      destroyOnAbort(out, signal, () => new StoreAbortedError(this.name, 'get', key, signal?.reason));
      return out;
    } catch (err) {
      // A range starting at or past the end (including any range of an empty object).
      if (range && !signal?.aborted && classify(err).status === 416) return emptyStream();
      throw this.fail(err, 'get', key, signal);
    }
  }

  async getBuffer(key: string, range?: ByteRange, opts?: SignalOptions): Promise<Buffer> {
    return readAll(await this.get(key, range, opts));
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const k = this.keyOf(key);
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: k }));
      const info: ObjectInfo = { key, size: res.ContentLength ?? 0 };
      if (res.LastModified) info.mtime = res.LastModified;
      info.storageClass = res.StorageClass ?? 'STANDARD';
      if (res.ObjectLockRetainUntilDate) info.retainUntil = res.ObjectLockRetainUntilDate;
      return info;
    } catch (err) {
      if (classify(err).kind === 'not-found') return undefined;
      throw this.fail(err, 'stat', key);
    }
  }

  async *list(prefix: string, opts: SignalOptions = {}): AsyncIterable<ObjectInfo> {
    const { signal } = opts;
    this.assertOpen();
    assertValidPrefix(prefix);
    let token: string | undefined;
    do {
      let page;
      try {
        throwIfAborted(signal, this.name, 'list', prefix);
        page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.prefix + prefix,
            MaxKeys: this.pageSize,
            ContinuationToken: token,
          }),
          signal ? { abortSignal: signal } : {},
        );
      } catch (err) {
        throw this.fail(err, 'list', prefix, signal);
      }
      for (const o of page.Contents ?? []) {
        throwIfAborted(signal, this.name, 'list', prefix);
        if (!o.Key?.startsWith(this.prefix)) continue;
        const info: ObjectInfo = { key: o.Key.slice(this.prefix.length), size: o.Size ?? 0 };
        if (o.LastModified) info.mtime = o.LastModified;
        if (o.StorageClass) info.storageClass = o.StorageClass;
        yield info;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string): Promise<void> {
    const k = this.keyOf(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: k }));
    } catch (err) {
      if (classify(err).kind === 'not-found') return;
      throw this.fail(err, 'delete', key);
    }
  }

  /**
   * The requested bytes, whatever the server made of the Range header: HTTP lets a server ignore it (200
   * with the whole object), and some S3 look-alikes widen it (s3rver answers `bytes=0-0` with everything).
   */
  private exactRange(
    body: Readable,
    range: ByteRange,
    status: number | undefined,
    contentRange: string | undefined,
    key: string,
  ): Readable {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange ?? '');
    if (status !== 206 || !m) return sliceStream(body, range.offset, range.length);
    const start = Number(m[1]);
    const end = Number(m[2]);
    if (start !== range.offset) {
      body.destroy();
      throw new TargetError(
        `target ${this.name}: the provider answered bytes ${start}-${end} for a request of ` +
          `${range.offset}-${range.offset + range.length - 1} on get ${key}`,
        { target: this.name, operation: 'get', key, kind: 'rejected', transient: false },
      );
    }
    return end - start + 1 > range.length ? sliceStream(body, 0, range.length) : body;
  }

  /** Destroys the client (its sockets and agents) when this store made it. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsClient) this.client.destroy();
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreClosedError(this.name);
  }

  /** The object's name in the bucket; also the check that the store is still open. */
  private keyOf(key: string): string {
    this.assertOpen();
    if (!this.sourceKeys) return keyOf(this.prefix, key);
    if (nameProblem(key) !== undefined) throw new Error(`invalid source key ${showName(key)}`);
    return this.prefix + key;
  }

  private fail(err: unknown, operation: StoreOperation, key: string, signal?: AbortSignal): Error {
    const ctx = { target: this.name, operation, key, endpoint: this.endpoint, container: 'bucket' };
    return storeError(err, ctx, signal);
  }
}

/** "" stays ""; "a/b" and "a/b/" become "a/b/". */
