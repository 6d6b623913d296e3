import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { TargetError } from '../../src/errors.js';
import { GcsStore, type GcsStoreOptions } from '../../src/store/gcs.js';
import { openStore } from '../../src/store/index.js';
import { RetryingStore } from '../../src/store/retry.js';
import { useServers } from '../harness/index.js';
import { storeConformance } from './conformance.js';

const servers = useServers({ gcs: true });

let n = 0;
storeConformance('gcs (fake)', {
  async open({ pageSize }) {
    const bucket = await servers.gcs.createBucket();
    return new GcsStore({
      name: 'gcs',
      bucket,
      prefix: ++n % 2 ? `backups/registry-${n}` : '',
      apiEndpoint: servers.gcs.url,
      projectId: servers.gcs.projectId,
      pageSize,
      maxRetries: 0,
    });
  },
});

// What a command works with: openStore's retry and metrics decorators around a LazyStore that loads the
// GCS provider, configured as a target is (the library's own retries on, default page size).
storeConformance('gcs (fake), decorated by openStore', {
  async open() {
    const bucket = await servers.gcs.createBucket();
    return openStore({
      name: 'gcs',
      type: 'gcs',
      bucket,
      prefix: ++n % 2 ? `backups/registry-${n}` : '',
      apiEndpoint: servers.gcs.url,
      projectId: servers.gcs.projectId,
      storageClass: 'STANDARD',
    });
  },
});

describe('gcs store: provider specifics (against the fake)', () => {
  const open = async (extra: Partial<GcsStoreOptions> = {}) =>
    new GcsStore({
      name: 'gcs',
      bucket: await servers.gcs.createBucket(undefined, { enableObjectRetention: true }),
      apiEndpoint: servers.gcs.url,
      projectId: servers.gcs.projectId,
      maxRetries: 0,
      ...extra,
    });

  it('puts with object retention and a storage class; a retained object cannot be deleted', async () => {
    const store = await open({ storageClass: 'NEARLINE', retentionMode: 'Unlocked' });
    const until = new Date(Date.now() + 3_600_000);
    await store.put('snapshots/one', Buffer.from('{}'), { retainUntil: until });
    await store.put('snapshots/streamed', Readable.from([Buffer.from('x')]), { retainUntil: until });
    const info = await store.stat('snapshots/one');
    assert.equal(info?.storageClass, 'NEARLINE');
    assert.equal(info?.retainUntil?.toISOString(), until.toISOString());
    assert.equal((await store.stat('snapshots/streamed'))?.retainUntil?.toISOString(), until.toISOString());
    await assert.rejects(store.delete('snapshots/one'), (err: unknown) => {
      assert.ok(err instanceof TargetError);
      assert.match(
        err.message,
        /^target gcs: the object is under retention \(403\) on delete snapshots\/one/,
      );
      return true;
    });
  });

  it('a missing bucket is a TargetError, not a missing object', async () => {
    const store = new GcsStore({
      name: 'gcs',
      bucket: 'never-created',
      apiEndpoint: servers.gcs.url,
      projectId: servers.gcs.projectId,
      maxRetries: 0,
    });
    await assert.rejects(store.getBuffer('k'), /target gcs: the bucket does not exist \(404\) on get k/);
    await assert.rejects(store.stat('k'), /the bucket does not exist/);
  });

  it('with the retry decorator: a 503 is retried, a 403 is not', async () => {
    const inner = await open();
    const store = new RetryingStore(inner, { attempts: 3, baseDelayMs: 1 });
    servers.gcs.fake.failNext({ method: 'POST', path: '/upload/', status: 503, times: 2 });
    await store.put('data/a', Buffer.from('a'));
    assert.equal((await store.getBuffer('data/a')).toString(), 'a');
    servers.gcs.fake.failNext({ method: 'GET', status: 403, times: 1, message: 'Forbidden' });
    await assert.rejects(store.stat('data/a'), /target gcs: access denied \(403\) on stat data\/a/);
    assert.equal((await store.stat('data/a'))?.size, 1);
  });

  it('sends a large stream as a resumable upload, a small Buffer as one request', async () => {
    const store = await open({ resumableThreshold: 1024 });
    const before = servers.gcs.requests.length;
    await store.put('data/small', Buffer.from('small'));
    await store.put('data/large', Readable.from([Buffer.alloc(4096, 1)]));
    const uploads = servers.gcs.requests
      .slice(before)
      .filter((r) => r.path.includes('/upload/') && r.method === 'POST')
      .map((r) => /uploadType=(\w+)/.exec(r.query)?.[1]);
    assert.deepEqual(uploads, ['multipart', 'resumable']);
  });
});
