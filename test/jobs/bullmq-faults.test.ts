import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { until } from './fixture.js';
import { useBullmqFixture, type Summary } from './bullmq-setup.js';

describe('the worker with BullMQ: a worker killed mid-job, SIGTERM', () => {
  const bq = useBullmqFixture();

  test('a worker killed (SIGKILL) mid-part: another worker picks the part up, and the run commits a whole snapshot', async () => {
    bq.config({ shards: 1 });
    bq.bigTarballs();
    try {
      const a = bq.worker();
      await a.waitFor(/worker started/);
      const queued = JSON.parse((await bq.f.cli(['jobs', 'run', 'backup', '--json'])).stdout) as {
        id: string;
      };
      await a.waitFor(/"part":\{"kind":"tarballs"[^\n]*backup-part started/, 60_000);
      await new Promise((r) => setTimeout(r, 300));
      a.child.kill('SIGKILL');
      await a.exited;
      const b = bq.worker();
      await b.waitFor(/worker started/);
      const run = await until(
        async () => (await bq.queue.getJob(queued.id))?.returnvalue as Summary | undefined,
        'the run job',
        30_000,
      );
      const commit = await until(
        async () => {
          // State first, then the job: a job fetched while active keeps a null return value.
          const id = `${run.runId}-commit`;
          if ((await bq.queue.getJobState(id)) !== 'completed') return undefined;
          return await bq.queue.getJob(id);
        },
        'the commit',
        60_000,
      );
      const part = (await bq.queue.getJob(`${run.runId}-s2-0`))!;
      assert.equal(await part.getState(), 'completed');
      assert.ok(
        part.processedBy?.endsWith(`:${b.pid}`),
        `the part was finished by the second worker (${part.processedBy})`,
      );
      assert.ok(b.stderr().includes(`"id":"${run.runId}-s2-0"`));
      const snap = await bq.lastSnapshot('local');
      assert.equal(snap.id, (commit.returnvalue as Summary).snapshot);
      const tb = snap.sources.find((x) => x.name === 'tarballs')!;
      assert.ok(tb.files! >= 40, 'the big tarballs are in the snapshot');
      await bq.stopAll();
    } finally {
      bq.dropBigTarballs();
    }
  });

  test('SIGTERM: a job that cannot finish in the grace period is handed back (no attempt used); the worker exits 0', async () => {
    // Enough new data that the part is still reading files when the grace period ends.
    bq.config({ shards: 1, grace: '300ms' });
    bq.bigTarballs(80);
    try {
      const a = bq.worker();
      await a.waitFor(/worker started/);
      const queued = JSON.parse((await bq.f.cli(['jobs', 'run', 'backup', '--json'])).stdout) as {
        id: string;
      };
      await a.waitFor(/"part":\{"kind":"tarballs"[^\n]*backup-part started/, 60_000);
      a.child.kill('SIGTERM');
      const exit = await a.exited;
      assert.equal(exit.code, 0, a.stderr().slice(-2000));
      assert.match(a.stderr(), /interrupted: backup-part handed back to the queue/);
      const run = (await bq.queue.getJob(queued.id))!.returnvalue as Summary;
      const part = (await bq.queue.getJob(`${run.runId}-s2-0`))!;
      assert.equal(await part.getState(), 'waiting');
      assert.equal(part.attemptsMade, 0);

      // Another worker finishes the run.
      const b = bq.worker();
      await until(
        async () => {
          const j = await bq.queue.getJob(`${run.runId}-commit`);
          return j && (await j.getState()) === 'completed';
        },
        'the commit',
        60_000,
      );
      assert.ok((await bq.queue.getJob(`${run.runId}-s2-0`))!.processedBy?.endsWith(`:${b.pid}`));

      // A short job in the grace period is finished, not handed back.
      bq.config({ shards: 1, grace: '60s' });
      await bq.stopAll();
      const c = bq.worker();
      await c.waitFor(/worker started/);
      const q2 = JSON.parse((await bq.f.cli(['jobs', 'run', 'backup', '--json'])).stdout) as { id: string };
      await c.waitFor(/"part":\{"kind":"tarballs"[^\n]*backup-part started/, 60_000);
      c.child.kill('SIGTERM');
      assert.equal((await c.exited).code, 0);
      const run2 = (await bq.queue.getJob(q2.id))!.returnvalue as Summary;
      assert.equal(await (await bq.queue.getJob(`${run2.runId}-s2-0`))!.getState(), 'completed');
      assert.doesNotMatch(c.stderr(), /interrupted: backup-part handed back/);
    } finally {
      bq.dropBigTarballs();
    }
  });
});
