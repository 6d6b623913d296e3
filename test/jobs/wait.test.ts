import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { Config } from '../../src/config/schema.js';
import { QUEUE_NAME } from '../../jobs/bullmq.js';
import { waitForJob } from '../../jobs/status.js';
import type { JobSummary } from '../../jobs/types.js';
import { startRedis, type RedisServer } from '../harness/index.js';

/** `jobs run … --wait` reads a job's result only once the job has finished, and never reads a null. */
describe('waiting for a queued job', () => {
  let redis: RedisServer;
  let conn: Redis;
  let queue: Queue;
  let worker: Worker;
  let workerConn: Redis;
  let config: Config;
  const summary: JobSummary = { job: 'check', status: 'ok', message: 'every target verified' };

  before(async () => {
    redis = await startRedis();
    conn = new Redis(redis.url, { maxRetriesPerRequest: null });
    queue = new Queue(QUEUE_NAME, { connection: conn, prefix: 'regbackup' });
    workerConn = new Redis(redis.url, { maxRetriesPerRequest: null });
    worker = new Worker(
      QUEUE_NAME,
      async (job) => {
        if ((job.data as { fail?: boolean }).fail) throw new Error('the target refused');
        return summary;
      },
      { connection: workerConn, prefix: 'regbackup' },
    );
    config = { queue: { redis: redis.url, prefix: 'regbackup' } } as unknown as Config;
  });
  after(async () => {
    await worker.close();
    await queue.close();
    await workerConn.quit();
    await conn.quit();
    await redis.stop();
  });

  test('a job that finishes while waited for gives its summary; a failed one its reason', async () => {
    const ok = await queue.add('check', {}, { delay: 300 });
    assert.deepEqual(await waitForJob(config, ok.id!, 60_000), summary);
    const bad = await queue.add('check', { fail: true }, { delay: 300 });
    const r = await waitForJob(config, bad.id!, 60_000);
    assert.equal(r.status, 'failed');
    assert.equal(r.message, 'the target refused');
  });

  test('a job the queue removed once finished is reported as such, at once (not a null, not a timeout)', async () => {
    const job = await queue.add('check', {}, { removeOnComplete: true });
    while ((await queue.getJobState(job.id!)) !== 'unknown') await new Promise((r) => setTimeout(r, 50));
    const r = await waitForJob(config, job.id!, 60_000);
    assert.equal(r.status, 'failed');
    assert.match(r.message, /removed it before its result could be read/);
  });
});
