import type { Readable } from 'node:stream';
import type { ByteRange, ObjectInfo, ObjectStore, PutBody, PutOptions, SignalOptions } from './types.js';

/** Passes every call through to `inner` (close() too); decorators override what they change. */
export abstract class StoreDecorator implements ObjectStore {
  constructor(protected readonly inner: ObjectStore) {}

  get name(): string {
    return this.inner.name;
  }

  get location(): string {
    return this.inner.location;
  }

  put(key: string, body: PutBody, opts?: PutOptions): Promise<void> {
    return this.inner.put(key, body, opts);
  }

  get(key: string, range?: ByteRange, opts?: SignalOptions): Promise<Readable> {
    return this.inner.get(key, range, opts);
  }

  getBuffer(key: string, range?: ByteRange, opts?: SignalOptions): Promise<Buffer> {
    return this.inner.getBuffer(key, range, opts);
  }

  stat(key: string): Promise<ObjectInfo | undefined> {
    return this.inner.stat(key);
  }

  list(prefix: string, opts?: SignalOptions): AsyncIterable<ObjectInfo> {
    return this.inner.list(prefix, opts);
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
