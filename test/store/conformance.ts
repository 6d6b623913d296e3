import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  ObjectNotFoundError,
  StoreAbortedError,
  StoreClosedError,
  type ObjectInfo,
  type ObjectStore,
} from '../../src/store/types.js';

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
  /**
   * What the backend holds for `store` besides its objects (temporary files, unfinished uploads), by name;
   * checked to be empty after an aborted put. Absent: nothing to look at beyond list().
   */
  leftovers?(store: ObjectStore): Promise<string[]>;
  /** Bytes a streamed put reads before the test aborts it (default 1 MiB; beyond one part to go multipart). */
  abortAfter?: number;
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

    it('puts a LocalFile, copied or hard-linked, and keeps the file', async () => {
      const store = await opts.open({});
      const dir = await mkdtemp(join(tmpdir(), 'regbackup-localfile-'));
      try {
        const data = randomBytes(300_000);
        const file = join(dir, 'pack');
        await writeFile(file, data);
        await store.put('data/lf/copied', { file, size: data.length });
        await store.put('data/lf/linked', { file, size: data.length, link: true });
        // The same file offered for a link again (a second target): the store must keep its own copy.
        await store.put('data/lf/again', { file, size: data.length, link: true });
        const empty = join(dir, 'empty');
        await writeFile(empty, '');
        await store.put('data/lf/empty', { file: empty, size: 0, link: true });
        for (const k of ['data/lf/copied', 'data/lf/linked', 'data/lf/again']) {
          assert.ok((await store.getBuffer(k)).equals(data), `${k} holds the file's bytes`);
          assert.equal((await store.stat(k))?.size, data.length, k);
        }
        assert.equal((await store.stat('data/lf/empty'))?.size, 0);
        assert.deepEqual(await listKeys(store, 'data/lf/'), [
          'data/lf/again',
          'data/lf/copied',
          'data/lf/empty',
          'data/lf/linked',
        ]);
        // The local file stays the caller's; once it is removed (as the spool does), every object remains.
        assert.ok((await readFile(file)).equals(data), 'the local file is still there, unchanged');
        await unlink(file);
        for (const k of ['data/lf/copied', 'data/lf/linked', 'data/lf/again'])
          assert.ok((await store.getBuffer(k)).equals(data), `${k} after the local file was removed`);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('an aborted put (stream, Buffer, LocalFile) stops, rejects with StoreAbortedError, leaves nothing', async () => {
      const store = await opts.open({});
      const abortAfter = opts.abortAfter ?? MiB;
      // A body that gives `abortAfter` bytes and then never ends: only the abort can stop this put.
      const ac = new AbortController();
      let given = 0;
      const endless = new Readable({
        read() {
          if (given >= abortAfter) {
            ac.abort();
            return; // no more data, and no end
          }
          const n = Math.min(64 * 1024, abortAfter - given);
          given += n;
          this.push(randomBytes(n));
        },
      });
      await assert.rejects(store.put('packs/aborted', endless, { signal: ac.signal }), isAborted(store));
      assert.ok(given >= abortAfter, `the store read ${given} bytes before the abort`);

      // Already aborted: nothing is sent.
      const done = AbortSignal.abort();
      await assert.rejects(
        store.put('packs/aborted-buffer', randomBytes(1000), { signal: done }),
        isAborted(store),
      );
      const dir = await mkdtemp(join(tmpdir(), 'regbackup-abort-'));
      try {
        const file = join(dir, 'pack');
        await writeFile(file, randomBytes(1000));
        for (const link of [false, true]) {
          await assert.rejects(
            store.put('packs/aborted-file', { file, size: 1000, link }, { signal: done }),
            isAborted(store),
          );
        }
        await assert.rejects(
          store.put('packs/aborted-stream', Readable.from([randomBytes(10)]), { signal: done }),
          isAborted(store),
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
      for (const k of ['packs/aborted', 'packs/aborted-buffer', 'packs/aborted-file', 'packs/aborted-stream'])
        assert.equal(await store.stat(k), undefined, k);
      assert.deepEqual(await listKeys(store, ''), []);
      if (opts.leftovers) assert.deepEqual(await opts.leftovers(store), []);

      // A signal that never aborts changes nothing.
      await store.put('packs/kept', randomBytes(10), { signal: new AbortController().signal });
      assert.equal((await store.stat('packs/kept'))?.size, 10);
    });

    it('an aborted get stops its stream with StoreAbortedError', async () => {
      const store = await opts.open({});
      const data = randomBytes(3 * MiB);
      await store.put('packs/read', data);
      await assert.rejects(
        store.get('packs/read', undefined, { signal: AbortSignal.abort() }),
        isAborted(store),
      );
      await assert.rejects(
        store.getBuffer('packs/read', { offset: 1, length: 10 }, { signal: AbortSignal.abort() }),
        isAborted(store),
      );
      const ac = new AbortController();
      const stream = await store.get('packs/read', undefined, { signal: ac.signal });
      let read = 0;
      await assert.rejects(
        (async () => {
          for await (const chunk of stream) {
            read += (chunk as Buffer).length;
            ac.abort();
          }
        })(),
        isAborted(store),
      );
      // Stopped after the first chunk: whatever that chunk held, the rest never arrived as data.
      assert.ok(read > 0, 'the first chunk was read');
      // The object is untouched, and a signal that does not abort reads it whole.
      const whole = await store.getBuffer('packs/read', undefined, { signal: new AbortController().signal });
      assert.ok(whole.equals(data), 'read whole with a signal that does not abort');
    });

    it('an aborted list stops with StoreAbortedError', async () => {
      const store = await opts.open({ pageSize: 10 });
      const keys = Array.from({ length: 25 }, (_, i) => `index/${String(i).padStart(2, '0')}`);
      await runLimited(keys, 8, (k) => store.put(k, Buffer.from(k)));
      await assert.rejects(listKeys(store, 'index/', AbortSignal.abort()), isAborted(store));
      const ac = new AbortController();
      const seen: string[] = [];
      await assert.rejects(
        (async () => {
          for await (const info of store.list('index/', { signal: ac.signal })) {
            seen.push(info.key);
            if (seen.length === 3) ac.abort();
          }
        })(),
        isAborted(store),
      );
      assert.deepEqual(seen, keys.slice(0, 3));
      assert.deepEqual(await listKeys(store, 'index/', new AbortController().signal), keys);
    });

    it('close() is idempotent; afterwards every operation rejects with StoreClosedError', async () => {
      const store = await opts.open({});
      await store.put('config', Buffer.from('c'));
      const stream = await store.get('config');
      await store.close();
      await store.close();
      await Promise.all([store.close(), store.close()]);
      const closed = (err: unknown) => {
        assert.ok(err instanceof StoreClosedError, `expected StoreClosedError, got ${String(err)}`);
        assert.equal(err.store, store.name);
        return true;
      };
      await assert.rejects(store.put('other', Buffer.from('x')), closed);
      await assert.rejects(store.get('config'), closed);
      await assert.rejects(store.getBuffer('config'), closed);
      await assert.rejects(store.stat('config'), closed);
      await assert.rejects(listKeys(store, ''), closed);
      await assert.rejects(store.delete('config'), closed);
      // A stream returned before close() is not cut (it is the caller's to finish or destroy).
      assert.equal((await collect(stream)).toString(), 'c');
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

export async function listInfos(
  store: ObjectStore,
  prefix: string,
  signal?: AbortSignal,
): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of store.list(prefix, signal ? { signal } : {})) out.push(info);
  return out;
}

export async function listKeys(store: ObjectStore, prefix: string, signal?: AbortSignal): Promise<string[]> {
  return (await listInfos(store, prefix, signal)).map((i) => i.key);
}

/** An assert.rejects check: the StoreAbortedError of `store`, named AbortError. */
function isAborted(store: ObjectStore): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof StoreAbortedError, `expected StoreAbortedError, got ${String(err)}`);
    assert.equal(err.name, 'AbortError');
    assert.equal(err.store, store.name);
    assert.match(err.message, /aborted$/);
    return true;
  };
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
