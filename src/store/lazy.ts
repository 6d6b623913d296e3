import type { Readable } from 'node:stream';
import type { GcsStoreOptions } from './gcs.js';
import { gcsLocation, s3Location } from './location.js';
import type { S3StoreOptions } from './s3.js';
import {
  StoreClosedError,
  type ByteRange,
  type ObjectInfo,
  type ObjectStore,
  type PutBody,
  type PutOptions,
  type SignalOptions,
} from './types.js';

/**
 * A store whose provider module (and its SDK: ~0.2 s and ~13 MB for AWS, ~0.4 s and ~24 MB for GCS) is
 * loaded on its first call, so that a process that never talks to a provider does not pay for it. close()
 * closes the provider if it was loaded (waiting for a load under way), and nothing is loaded after it.
 */
export class LazyStore implements ObjectStore {
  private opened?: Promise<ObjectStore>;
  private closed?: Promise<void>;

  constructor(
    readonly name: string,
    readonly location: string,
    private readonly load: () => Promise<ObjectStore>,
  ) {}

  private async store(): Promise<ObjectStore> {
    if (this.closed) throw new StoreClosedError(this.name);
    return (this.opened ??= this.load());
  }

  async put(key: string, body: PutBody, opts?: PutOptions): Promise<void> {
    return (await this.store()).put(key, body, opts);
  }

  async get(key: string, range?: ByteRange, opts?: SignalOptions): Promise<Readable> {
    return (await this.store()).get(key, range, opts);
  }

  async getBuffer(key: string, range?: ByteRange, opts?: SignalOptions): Promise<Buffer> {
    return (await this.store()).getBuffer(key, range, opts);
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    return (await this.store()).stat(key);
  }

  async *list(prefix: string, opts?: SignalOptions): AsyncIterable<ObjectInfo> {
    yield* (await this.store()).list(prefix, opts);
  }

  async delete(key: string): Promise<void> {
    return (await this.store()).delete(key);
  }

  close(): Promise<void> {
    this.closed ??= (async () => {
      // A provider that failed to load holds nothing.
      const inner = await this.opened?.catch(() => undefined);
      await inner?.close();
    })();
    return this.closed;
  }
}

/** An S3 store (AWS or S3-compatible) that loads the AWS SDK when first used. */
export function lazyS3(opts: S3StoreOptions): ObjectStore {
  return new LazyStore(opts.name, s3Location(opts), async () => new (await import('./s3.js')).S3Store(opts));
}

/** A GCS store that loads the Google Cloud Storage library when first used. */
export function lazyGcs(opts: GcsStoreOptions): ObjectStore {
  return new LazyStore(
    opts.name,
    gcsLocation(opts),
    async () => new (await import('./gcs.js')).GcsStore(opts),
  );
}
