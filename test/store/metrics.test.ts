import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { StoreDecorator } from '../../src/store/decorator.js';
import { MemoryStore } from '../../src/store/memory.js';
import { MeteredStore, StoreMetrics } from '../../src/store/metrics.js';
import { RetryingStore } from '../../src/store/retry.js';
import { collect, listKeys } from './conformance.js';

describe('metrics decorator', () => {
  it('counts requests by kind, body bytes up and down, and errors', async () => {
    const store = new MeteredStore(new MemoryStore('m'));
    await store.put('a', Buffer.alloc(1000));
    await store.put('b', Readable.from([Buffer.alloc(300), Buffer.alloc(200)]));
    assert.equal((await store.getBuffer('a')).length, 1000);
    assert.equal((await collect(await store.get('b', { offset: 100, length: 50 }))).length, 50);
    await store.stat('a');
    await store.stat('missing');
    assert.deepEqual(await listKeys(store, ''), ['a', 'b']);
    await store.delete('a');
    await assert.rejects(store.getBuffer('missing'));
    await assert.rejects(store.put('bad key', Buffer.alloc(1)));

    assert.deepEqual(store.metrics.snapshot(), {
      requests: { put: 3, get: 3, stat: 2, list: 1, delete: 1 },
      // A missing object is an answer, not an error; an invalid key is.
      errors: { put: 1, get: 0, stat: 0, list: 0, delete: 0 },
      bytesUp: 1000 + 500 + 1,
      bytesDown: 1000 + 50,
    });
  });

  it('counts every attempt when placed inside the retry decorator', async () => {
    let failures = 2;
    const flaky = new (class extends StoreDecorator {
      override async stat(key: string) {
        if (failures-- > 0) throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
        return this.inner.stat(key);
      }
    })(new MemoryStore('m'));
    const metrics = new StoreMetrics();
    const store = new RetryingStore(new MeteredStore(flaky, metrics), { sleep: async () => undefined });
    assert.equal(await store.stat('x'), undefined);
    const snap = metrics.snapshot();
    assert.equal(snap.requests.stat, 3);
    assert.equal(snap.errors.stat, 2);
  });

  it('snapshots are copies', async () => {
    const store = new MeteredStore(new MemoryStore('m'));
    const before = store.metrics.snapshot();
    await store.put('a', Buffer.alloc(10));
    assert.equal(before.requests.put, 0);
    assert.equal(store.metrics.snapshot().requests.put, 1);
  });
});
