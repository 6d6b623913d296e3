import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { Readable as ReadableStream } from 'node:stream';
import { assertValidRange, destroyOnAbort, readAll } from './streams.js';
import {
  ObjectNotFoundError,
  StoreAbortedError,
  StoreClosedError,
  isLocalFile,
  throwIfAborted,
  type SignalOptions,
  type PutBody,
  assertValidKey,
  assertValidPrefix,
  type ByteRange,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
} from './types.js';

/**
 * Objects in a Map: for unit tests of the layers above (repository, snapshots) and for dry runs. Passes
 * the same conformance suite as the real providers.
 */
export class MemoryStore implements ObjectStore {
  readonly location: string;
  private readonly objects = new Map<string, { data: Buffer; mtime: Date; retainUntil?: Date }>();
  private closed = false;

  constructor(readonly name = 'memory') {
    this.location = `memory://${name}/`;
  }

  async put(key: string, body: PutBody, opts: PutOptions = {}): Promise<void> {
    this.open();
    assertValidKey(key);
    const { signal } = opts;
    throwIfAborted(signal, this.name, 'put', key);
    const aborted = () => new StoreAbortedError(this.name, 'put', key, signal?.reason);
    let data: Buffer;
    if (Buffer.isBuffer(body)) data = Buffer.from(body);
    else if (isLocalFile(body)) data = await readFile(body.file, signal ? { signal } : {});
    else {
      destroyOnAbort(body, signal, aborted);
      data = await readAll(body);
    }
    if (signal?.aborted) throw aborted();
    this.objects.set(key, {
      data,
      mtime: new Date(),
      ...(opts.retainUntil ? { retainUntil: opts.retainUntil } : {}),
    });
  }

  async get(key: string, range?: ByteRange, opts: SignalOptions = {}): Promise<Readable> {
    const stream = ReadableStream.from([await this.getBuffer(key, range, opts)], { objectMode: false });
    const { signal } = opts;
    destroyOnAbort(stream, signal, () => new StoreAbortedError(this.name, 'get', key, signal?.reason));
    return stream;
  }

  async getBuffer(key: string, range?: ByteRange, opts: SignalOptions = {}): Promise<Buffer> {
    this.open();
    assertValidKey(key);
    throwIfAborted(opts.signal, this.name, 'get', key);
    assertValidRange(range);
    const o = this.objects.get(key);
    if (!o) throw new ObjectNotFoundError(this.name, key);
    if (!range) return Buffer.from(o.data);
    return Buffer.from(o.data.subarray(range.offset, range.offset + range.length));
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    this.open();
    assertValidKey(key);
    const o = this.objects.get(key);
    if (!o) return undefined;
    return {
      key,
      size: o.data.length,
      mtime: o.mtime,
      ...(o.retainUntil ? { retainUntil: o.retainUntil } : {}),
    };
  }

  async *list(prefix: string, opts: SignalOptions = {}): AsyncIterable<ObjectInfo> {
    this.open();
    assertValidPrefix(prefix);
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort();
    for (const key of keys) {
      throwIfAborted(opts.signal, this.name, 'list', prefix);
      const info = await this.stat(key);
      if (info) yield info;
    }
  }

  async delete(key: string): Promise<void> {
    this.open();
    assertValidKey(key);
    this.objects.delete(key);
  }

  /** Nothing to release; the objects stay (a MemoryStore is its own backend). */
  async close(): Promise<void> {
    this.closed = true;
  }

  private open(): void {
    if (this.closed) throw new StoreClosedError(this.name);
  }
}
