import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ObjectNotFoundError, type ObjectInfo, type ObjectStore } from '../../src/store/types.js';

export interface ConformanceOptions {
  /**
   * A fresh, empty store. `pageSize` asks for small list pages where the provider has that option, so
   * that pagination is exercised without thousands of objects per page.
   */
  open(opts: { pageSize?: number }): Promise<ObjectStore>;
  /** Size of the streamed round trip (default 30 MiB). */
  streamSize?: number;
  /**
   * Peak growth of retained memory allowed while streaming it up or down (default 24 MiB). Anything that
   * holds the whole body at once needs at least `streamSize`, so keep the limit well below it.
   */
  streamMemoryLimit?: number;
  /**
   * Known gaps of a stand-in server (not of the store), described. The affected assertions are weakened
   * and the gap is reported as a test diagnostic, so it stays visible.
   */
  knownGaps?: {
    /** The server lists in directory-walk order ("a/b" before "a-b"), not in byte order. */
    listOrder?: string;
  };
}

const MiB = 1024 * 1024;

/**
 * The one suite every ObjectStore must pass, run unchanged against each provider (after restic's backend
 * tests). Registers a describe block; call it at the top level of a test file.
 */
export function storeConformance(label: string, opts: ConformanceOptions): void {
  describe(`ObjectStore conformance: ${label}`, () => {
    it('round-trips Buffers, including an empty one', async () => {
      const store = await opts.open({});
      const small = randomBytes(1234);
      await store.put('data/ab/small', small);
      assert.deepEqual(await store.getBuffer('data/ab/small'), small);
      assert.deepEqual(await collect(await store.get('data/ab/small')), small);
      await store.put('data/empty', Buffer.alloc(0));
      assert.deepEqual(await store.getBuffer('data/empty'), Buffer.alloc(0));
      assert.equal((await store.stat('data/empty'))?.size, 0);
      await store.put('data/ab/typed', Buffer.from('{}'), { contentType: 'application/json' });
      assert.equal((await store.getBuffer('data/ab/typed')).toString(), '{}');
    });

    it(`round-trips a streamed ${mib(opts.streamSize ?? 30 * MiB)} body without holding it in memory`, async () => {
      const store = await opts.open({});
      const size = opts.streamSize ?? 30 * MiB;
      const limit = opts.streamMemoryLimit ?? 24 * MiB;
      const source = randomStream(size);
      const up = await peakMemoryDuring(() => store.put('packs/big', source.stream));
      assert.equal((await store.stat('packs/big'))?.size, size);
      let readHash = '';
      const down = await peakMemoryDuring(async () => {
        readHash = await sha256Of(await store.get('packs/big'));
      });
      assert.equal(readHash, source.digest());
      assert.ok(up < limit, `put grew memory by ${mib(up)} (limit ${mib(limit)})`);
      assert.ok(down < limit, `get grew memory by ${mib(down)} (limit ${mib(limit)})`);

      // With the size announced, as a caller that knows it would.
      const known = randomStream(6 * MiB + 17);
      await store.put('packs/known', known.stream, { size: 6 * MiB + 17 });
      assert.equal(await sha256Of(await store.get('packs/known')), known.digest());
    });

    it('leaves no object behind when the body stream fails', async () => {
      const store = await opts.open({});
      // Fails before the store has read it (while it prepares), and again after one chunk.
      const early = new Readable({
        read() {
          this.destroy(new Error('source broke early'));
        },
      });
      early.push(randomBytes(1000));
      await assert.rejects(store.put('data/broken', early), /source broke early/);
      const late = Readable.from(
        (async function* () {
          yield randomBytes(100_000);
          throw new Error('source broke late');
        })(),
        { objectMode: false },
      );
      await assert.rejects(store.put('data/broken', late), /source broke late/);
      assert.equal(await store.stat('data/broken'), undefined);
      const keys = await listKeys(store, '');
      assert.deepEqual(keys, []);
    });

    it('reads byte ranges at the start, middle and end, and cuts ranges at the end', async () => {
      const store = await opts.open({});
      const data = randomBytes(MiB + 333);
      await store.put('packs/ranged', data);
      const cases: Array<[number, number]> = [
        [0, 1],
        [0, 100],
        [500_000, 4096],
        [data.length - 100, 100],
        [data.length - 1, 1],
        [0, data.length],
      ];
      for (const [offset, length] of cases) {
        assert.deepEqual(
          await store.getBuffer('packs/ranged', { offset, length }),
          data.subarray(offset, offset + length),
          `range ${offset}+${length}`,
        );
      }
      assert.deepEqual(
        await collect(await store.get('packs/ranged', { offset: 10, length: 20 })),
        data.subarray(10, 30),
      );
      // Past the end: cut; at or after the end: nothing; empty range: nothing.
      assert.deepEqual(
        await store.getBuffer('packs/ranged', { offset: data.length - 10, length: 100 }),
        data.subarray(-10),
      );
      assert.equal((await store.getBuffer('packs/ranged', { offset: data.length, length: 10 })).length, 0);
      assert.equal((await store.getBuffer('packs/ranged', { offset: 5, length: 0 })).length, 0);
      await assert.rejects(store.getBuffer('packs/ranged', { offset: -1, length: 5 }), /invalid byte range/);
      await assert.rejects(store.getBuffer('packs/ranged', { offset: 1.5, length: 5 }), /invalid byte range/);
    });

    it('stats present and absent objects', async () => {
      const store = await opts.open({});
      const before = Date.now();
      await store.put('index/one', randomBytes(4321));
      const info = await store.stat('index/one');
      assert.ok(info);
      assert.equal(info.key, 'index/one');
      assert.equal(info.size, 4321);
      if (info.mtime) {
        assert.ok(info.mtime instanceof Date);
        assert.ok(Math.abs(info.mtime.getTime() - before) < 5 * 60_000, `mtime ${info.mtime.toISOString()}`);
      }
      assert.equal(await store.stat('index/two'), undefined);
      assert.equal(await store.stat('nothing/here/at/all'), undefined);
      // A "directory" is not an object.
      assert.equal(await store.stat('index'), undefined);
    });

    it('rejects get of an absent object with ObjectNotFoundError', async () => {
      const store = await opts.open({});
      await store.put('present', Buffer.from('x'));
      for (const attempt of [
        () => store.get('absent'),
        () => store.getBuffer('absent'),
        () => store.get('deep/absent/key', { offset: 0, length: 10 }),
        () => store.getBuffer('absent', { offset: 0, length: 0 }),
        () => store.get('present/child'),
      ]) {
        await assert.rejects(attempt(), (err: unknown) => {
          assert.ok(err instanceof ObjectNotFoundError, `expected ObjectNotFoundError, got ${String(err)}`);
          assert.equal(err.store, store.name);
          assert.equal(err.code, 'E_NOT_FOUND');
          return true;
        });
      }
    });

    it('lists more than 1000 objects by prefix, paginated, in lexicographic order', async (t) => {
      const store = await opts.open({ pageSize: 100 });
      const keys: string[] = [];
      for (let i = 0; i < 1050; i++) keys.push(`data/${(i * 7919).toString(16).padStart(6, '0')}`);
      await runLimited(keys, 16, (k) => store.put(k, Buffer.from(k)));
      // Keys whose order differs between "walk the directories" and "sort the keys" ("-" < "/" < "0").
      // (No key is also the "directory" of others, like "a" and "a/b": see the ObjectStore interface.)
      const tricky = [
        'snap/a-b',
        'snap/a/b',
        'snap/a/c/d',
        'snap/a0',
        'snap/aB',
        'snap/B',
        'snap/_x',
        'snap/a.',
      ];
      for (const k of tricky) await store.put(k, Buffer.from(k));

      const listed = await listInfos(store, 'data/');
      assert.equal(listed.length, 1050);
      assert.deepEqual(
        listed.map((i) => i.key),
        [...keys].sort(),
      );
      for (const info of listed.slice(0, 5)) assert.equal(info.size, info.key.length);

      const gap = opts.knownGaps?.listOrder;
      const order = (keys: string[]) => (gap ? [...keys].sort() : keys);
      if (gap) t.diagnostic(`known gap of the server, order of "-", "." vs "/" not checked: ${gap}`);
      assert.deepEqual(order(await listKeys(store, 'snap/')), [...tricky].sort());
      // A prefix that ends inside a segment.
      assert.deepEqual(
        order(await listKeys(store, 'snap/a')),
        [...tricky].filter((k) => k.startsWith('snap/a')).sort(),
      );
      assert.deepEqual(await listKeys(store, 'snap/a/'), ['snap/a/b', 'snap/a/c/d']);
      assert.deepEqual(await listKeys(store, 'data/00000'), ['data/000000']);
      assert.deepEqual(await listKeys(store, 'nothing/'), []);
      const all = await listKeys(store, '');
      assert.equal(all.length, 1050 + tricky.length);
      assert.deepEqual(order(all), [...all].sort());
    });

    it('deletes objects; deleting an absent object is fine', async () => {
      const store = await opts.open({});
      await store.put('locks/one', Buffer.from('1'));
      await store.put('locks/two', Buffer.from('2'));
      await store.delete('locks/one');
      assert.equal(await store.stat('locks/one'), undefined);
      await assert.rejects(store.getBuffer('locks/one'), ObjectNotFoundError);
      assert.deepEqual(await listKeys(store, 'locks/'), ['locks/two']);
      await store.delete('locks/one');
      await store.delete('never/was/here');
    });

    it('rejects invalid keys and prefixes before touching the backend', async () => {
      const store = await opts.open({});
      const bad = [
        '',
        '/abs',
        'trailing/',
        'a//b',
        'a/../b',
        '..',
        '.',
        './a',
        'a/.',
        'back\\slash',
        'sp ace',
        'nul\0',
        'é',
        'x'.repeat(513),
      ];
      for (const key of bad) {
        await assert.rejects(
          store.put(key, Buffer.from('x')),
          /invalid object key/,
          `put ${JSON.stringify(key)}`,
        );
        await assert.rejects(store.get(key), /invalid object key/, `get ${JSON.stringify(key)}`);
        await assert.rejects(store.getBuffer(key), /invalid object key/, `getBuffer ${JSON.stringify(key)}`);
        await assert.rejects(store.stat(key), /invalid object key/, `stat ${JSON.stringify(key)}`);
        await assert.rejects(store.delete(key), /invalid object key/, `delete ${JSON.stringify(key)}`);
      }
      for (const prefix of ['/abs', '../', 'a//', 'sp ace/']) {
        await assert.rejects(listKeys(store, prefix), /invalid object key/, `list ${JSON.stringify(prefix)}`);
      }
      assert.deepEqual(await listKeys(store, ''), []);
    });

    it('handles keys with many path segments and unusual characters', async () => {
      const store = await opts.open({});
      const deep = Array.from({ length: 24 }, (_, i) => `s${i}`).join('/');
      const odd = 'odd/@scope%2fname/-/name-1.0.0+build~1.tgz';
      await store.put(deep, Buffer.from('deep'));
      await store.put(odd, Buffer.from('odd'));
      await store.put('.hidden/.file', Buffer.from('hidden'));
      assert.equal((await store.getBuffer(deep)).toString(), 'deep');
      assert.equal((await store.getBuffer(odd)).toString(), 'odd');
      assert.equal((await store.getBuffer('.hidden/.file')).toString(), 'hidden');
      assert.deepEqual(await listKeys(store, 's0/s1/'), [deep]);
      assert.deepEqual(await listKeys(store, ''), ['.hidden/.file', odd, deep].sort());
      await store.delete(deep);
      assert.equal(await store.stat(deep), undefined);
    });
  });
}

// --- helpers ---------------------------------------------------------------------------------------------

export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export async function listInfos(store: ObjectStore, prefix: string): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of store.list(prefix)) out.push(info);
  return out;
}

export async function listKeys(store: ObjectStore, prefix: string): Promise<string[]> {
  return (await listInfos(store, prefix)).map((i) => i.key);
}

async function sha256Of(stream: Readable): Promise<string> {
  const h = createHash('sha256');
  for await (const c of stream) h.update(c as Buffer);
  return h.digest('hex');
}

/** `size` random bytes, made as they are read (never all in memory), with their SHA-256. */
export function randomStream(size: number, chunk = 64 * 1024): { stream: Readable; digest(): string } {
  const h = createHash('sha256');
  let left = size;
  let digest: string | undefined;
  const stream = new Readable({
    read() {
      if (left === 0) {
        digest = h.digest('hex');
        this.push(null);
        return;
      }
      const n = Math.min(chunk, left);
      left -= n;
      const buf = randomBytes(n);
      h.update(buf);
      this.push(buf);
    },
  });
  return {
    stream,
    digest() {
      if (digest === undefined) throw new Error('the stream was not read to the end');
      return digest;
    },
  };
}

async function runLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

let gcFn: (() => void) | undefined;
function gc(): void {
  if (!gcFn) {
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  gcFn();
}

/**
 * Peak growth of what the process holds (V8 heap + Buffers) while `fn` runs: sampled after a forced GC, so
 * garbage that is merely waiting for collection does not count, only memory that is really retained.
 */
async function peakMemoryDuring(fn: () => Promise<void>): Promise<number> {
  // arrayBuffers, not external: external lags behind frees and shows spikes of memory already released.
  const held = () => {
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const base = held();
  let peak = base;
  let done = false;
  // Samples 50 ms apart, the GC time not included (a GC with 30 MiB alive takes ~25 ms).
  const sampler = (async () => {
    while (!done) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      peak = Math.max(peak, held());
    }
  })();
  try {
    await fn();
  } finally {
    done = true;
    await sampler;
  }
  peak = Math.max(peak, held());
  if (process.env.STORE_TEST_VERBOSE) console.log(`memory growth ${mib(peak - base)}`);
  return peak - base;
}

function mib(n: number): string {
  return `${Number((n / MiB).toFixed(1))} MiB`;
}
