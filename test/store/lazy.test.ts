import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FsStore } from '../../src/store/fs.js';
import { LazyStore } from '../../src/store/lazy.js';
import { MemoryStore } from '../../src/store/memory.js';
import { StoreClosedError, type ObjectStore } from '../../src/store/types.js';
import { tmpDirSync } from '../harness/index.js';
import { storeConformance } from './conformance.js';

const root = tmpDirSync('regbackup-lazystore-');
let n = 0;

// The provider (here the filesystem) behind a LazyStore: it must pass the suite unchanged.
storeConformance('lazy (fs)', {
  async open() {
    const dir = `${root}/store-${++n}`;
    return new LazyStore('lazy', `file://${dir}/`, async () => new FsStore({ name: 'lazy', root: dir }));
  },
});

describe('LazyStore: loading and closing', () => {
  /** A LazyStore over a MemoryStore that counts its loads and closes. */
  function counted(load?: () => Promise<ObjectStore>) {
    const inner = new MemoryStore('lazy');
    const c = { loads: 0, closes: 0 };
    const close = inner.close.bind(inner);
    inner.close = async () => {
      c.closes++;
      return close();
    };
    const store = new LazyStore('lazy', 'memory://lazy/', async () => {
      c.loads++;
      return load ? load() : inner;
    });
    return { store, c };
  }

  it('loads its provider once, on the first call, even for concurrent first calls', async () => {
    const { store, c } = counted();
    assert.equal(store.name, 'lazy');
    assert.equal(store.location, 'memory://lazy/');
    assert.equal(c.loads, 0, 'nothing loaded by construction');
    await Promise.all([store.put('a', Buffer.from('1')), store.stat('a'), store.put('b', Buffer.from('2'))]);
    assert.equal(c.loads, 1);
    assert.equal((await store.getBuffer('a')).toString(), '1');
    assert.equal(c.loads, 1);
  });

  it('close() before any call loads nothing; later calls reject with StoreClosedError', async () => {
    const { store, c } = counted();
    await store.close();
    await store.close();
    assert.equal(c.loads, 0);
    await assert.rejects(store.stat('a'), StoreClosedError);
    await assert.rejects(store.put('a', Buffer.from('x')), StoreClosedError);
    assert.equal(c.loads, 0);
  });

  it('close() closes a loaded provider once, and waits for a load under way', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const inner = new MemoryStore('lazy');
    let closes = 0;
    const close = inner.close.bind(inner);
    inner.close = async () => {
      closes++;
      return close();
    };
    const store = new LazyStore('lazy', 'memory://lazy/', async () => {
      await gate;
      return inner;
    });
    const pending = store.stat('a').catch((err: unknown) => err); // starts the load
    const closing = store.close();
    release();
    await closing;
    // The call that raced close() met either the open store or the closed one, nothing else.
    const raced = await pending;
    assert.ok(raced === undefined || raced instanceof StoreClosedError, `got ${String(raced)}`);
    await store.close();
    assert.equal(closes, 1);
    await assert.rejects(inner.stat('a'), StoreClosedError);
  });

  it('a provider that fails to load: every call says why, close() still resolves', async () => {
    const { store } = counted(async () => {
      throw new Error('cannot load the SDK');
    });
    await assert.rejects(store.stat('a'), /cannot load the SDK/);
    await assert.rejects(store.getBuffer('a'), /cannot load the SDK/);
    await store.close();
    await assert.rejects(store.stat('a'), StoreClosedError);
  });
});
