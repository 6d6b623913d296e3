import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { Readable as ReadableStream } from 'node:stream';
import { assertValidRange, readAll } from './streams.js';
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

/**
 * Objects in a Map: for unit tests of the layers above (repository, snapshots) and for dry runs. Passes
 * the same conformance suite as the real providers.
 */
export class MemoryStore implements ObjectStore {
  readonly location: string;
  private readonly objects = new Map<string, { data: Buffer; mtime: Date; retainUntil?: Date }>();

  constructor(readonly name = 'memory') {
    this.location = `memory://${name}/`;
  }

  async put(key: string, body: PutBody, opts: PutOptions = {}): Promise<void> {
    assertValidKey(key);
    const data = Buffer.isBuffer(body)
      ? Buffer.from(body)
      : isLocalFile(body)
        ? await readFile(body.file)
        : await readAll(body);
    this.objects.set(key, {
      data,
      mtime: new Date(),
      ...(opts.retainUntil ? { retainUntil: opts.retainUntil } : {}),
    });
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    return ReadableStream.from([await this.getBuffer(key, range)], { objectMode: false });
  }

  async getBuffer(key: string, range?: ByteRange): Promise<Buffer> {
    assertValidKey(key);
    assertValidRange(range);
    const o = this.objects.get(key);
    if (!o) throw new ObjectNotFoundError(this.name, key);
    if (!range) return Buffer.from(o.data);
    return Buffer.from(o.data.subarray(range.offset, range.offset + range.length));
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
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

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    assertValidPrefix(prefix);
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort();
    for (const key of keys) {
      const info = await this.stat(key);
      if (info) yield info;
    }
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    this.objects.delete(key);
  }
}
