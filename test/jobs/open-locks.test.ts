import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Config } from '../../src/config/schema.js';
import { TargetError } from '../../src/errors.js';
import { openLocks, sourceLockKeys } from '../../jobs/locks.js';
import { startRedis } from '../harness/redis.js';
import { tmpDir } from '../harness/tmp.js';

const withQueue = (redis: string, cache: string) =>
  ({ cache, queue: { redis, prefix: 'regbackup-test' } }) as unknown as Config;

test('the locks of a backup by hand: in Redis with a queue (shared with the worker), files without one; an unreachable Redis is an error within the ping time', async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const cache = await tmpDir(t);
  const keys = sourceLockKeys(['skimdb', 'tarballs']);
  assert.deepEqual(keys, ['source:skimdb', 'source:tarballs']);

  const a = await openLocks(withQueue(redis.url, cache));
  const b = await openLocks(withQueue(redis.url, cache));
  try {
    assert.equal(await a.locks.acquire(keys, 'worker-run', 60_000), true);
    // Another process sees the lock in Redis (not in its own memory) and cannot take it.
    assert.equal(await b.locks.acquire(['source:tarballs'], 'by-hand', 60_000), false);
    assert.equal((await b.locks.held())['source:tarballs'], 'worker-run');
    await a.locks.release(keys, 'worker-run');
    assert.equal(await b.locks.acquire(['source:tarballs'], 'by-hand', 60_000), true);
    await b.locks.release(['source:tarballs'], 'by-hand');
  } finally {
    await a.close();
    await b.close();
  }

  const files = await openLocks({ cache } as unknown as Config);
  assert.equal(await files.locks.acquire(keys, 'x', 60_000), true);
  assert.deepEqual(Object.keys(await files.locks.held()).sort(), keys);

  const started = Date.now();
  await assert.rejects(
    openLocks(withQueue('redis://:secret-pw@127.0.0.1:1', cache), 500),
    (e: Error) =>
      e instanceof TargetError &&
      /Redis at 127\.0\.0\.1:1 does not answer \(.*ECONNREFUSED/.test(e.message) &&
      !e.message.includes('secret-pw'),
  );
  assert.ok(Date.now() - started < 5000, 'gave up at the ping time, not at a connection retry loop');
});
