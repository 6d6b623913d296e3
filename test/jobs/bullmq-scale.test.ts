import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { JobsStatus } from '../../jobs/status.js';
import { useBullmqFixture, type Summary } from './bullmq-setup.js';

describe('the worker with BullMQ: scale-out, schedulers, no overlap', () => {
  const bq = useBullmqFixture();

  test('two worker processes share the parts of one run; the snapshot is whole', async () => {
    // The reference: the same sources backed up in one process.
    const ref = await bq.f.cli(['backup', '--json']);
    assert.equal(ref.code, 0, ref.stderr);
    const reference = bq.shape(await bq.lastSnapshot('local'));

    const a = bq.worker();
    const b = bq.worker();
    await Promise.all([a.waitFor(/worker started/), b.waitFor(/worker started/)]);
    const r = await bq.f.cli(['jobs', 'run', 'backup', '--wait', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as Summary;
    assert.equal(s.status, 'ok', r.stdout);
    assert.equal(s.parts, 2 + 3, 'two databases, three tarball shards');

    const parts = (await bq.jobsOf('backup-part')).filter(
      (j) => (j.data as { plan: { runId: string } }).plan.runId === s.runId,
    );
    assert.equal(parts.length, 5);
    const by = new Set(parts.map((j) => j.processedBy));
    assert.equal(
      by.size,
      2,
      `both workers took parts: ${parts.map((j) => `${j.id} by ${j.processedBy}`).join(', ')}`,
    );
    for (const w of [a, b])
      assert.ok(
        [...by].some((x) => x?.endsWith(`:${w.pid}`)),
        `worker ${w.pid} did a part`,
      );

    for (const target of ['local', 'aws']) {
      const snap = await bq.lastSnapshot(target);
      assert.equal(snap.id, s.snapshot);
      assert.deepEqual(
        bq.shape(snap),
        reference,
        `the run's snapshot on ${target} holds what a one-process backup holds`,
      );
    }

    const js = await bq.f.cli(['jobs', '--json']);
    assert.equal(js.code, 0, js.stderr);
    const status = JSON.parse(js.stdout) as JobsStatus;
    assert.equal(status.mode, 'bullmq');
    assert.ok(status.last.some((j) => j.job === 'backup' && j.source === 'skimdb' && j.lastStatus === 'ok'));
    assert.equal(status.queue!.failed, 0);
    await bq.stopAll();
  });

  test('several workers upsert the same schedulers: one scheduler per job, one job per firing', async () => {
    bq.config({ schedule: "check: '* * * * * *', ", grace: '5s' });
    const a = bq.worker();
    const b = bq.worker();
    const c = bq.worker();
    await Promise.all([a, b, c].map((w) => w.waitFor(/worker started/)));
    // Wait for a few firings (however loaded the machine is), then judge them by what BullMQ recorded: the
    // firing time is in each job's ID (`repeat:<scheduler>:<ms>`).
    const fired = async () =>
      (await bq.jobsOf('check')).filter((j) => String(j.id).startsWith('repeat:schedule-check:'));
    let checks = await fired();
    for (const until = Date.now() + 120_000; checks.length < 4 && Date.now() < until; checks = await fired())
      await new Promise((r) => setTimeout(r, 250));
    assert.ok(checks.length >= 4, `the scheduler fired ${checks.length} check jobs`);
    const schedulers = await bq.queue.getJobSchedulers();
    assert.deepEqual(
      schedulers.map((x) => x.key ?? x.id),
      ['schedule-check'],
    );
    // Every check job came from that one scheduler, and no firing (a second of the schedule) made two.
    const all = await bq.jobsOf('check');
    assert.deepEqual(
      all.filter((j) => !String(j.id).startsWith('repeat:schedule-check:')).map((j) => j.id),
      [],
    );
    const seconds = all.map((j) => Math.floor(Number(String(j.id).split(':').pop()) / 1000));
    assert.ok(
      seconds.every((x) => Number.isSafeInteger(x) && x > 0),
      all.map((j) => j.id).join(', '),
    );
    assert.equal(new Set(seconds).size, seconds.length, `one job per firing: ${seconds.join(', ')}`);
    const js = JSON.parse((await bq.f.cli(['jobs', '--json'])).stdout) as JobsStatus;
    assert.deepEqual(
      js.schedules.map((x) => [x.job, x.installed]),
      [['check', true]],
    );
    assert.ok(js.schedules[0]!.next);
    await bq.stopAll();
    await bq.queue.removeJobScheduler('schedule-check');
    bq.config();
  });

  test('two backups of the same sources at once never overlap', async () => {
    const a = bq.worker();
    const b = bq.worker();
    await Promise.all([a.waitFor(/worker started/), b.waitFor(/worker started/)]);
    const [r1, r2] = await Promise.all([
      bq.f.cli(['jobs', 'run', 'backup', '--wait', '--json']),
      bq.f.cli(['jobs', 'run', 'backup', '--wait', '--json']),
    ]);
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(r2.code, 0, r2.stderr);
    const [s1, s2] = [JSON.parse(r1.stdout) as Summary, JSON.parse(r2.stdout) as Summary].sort(
      (x, y) => Date.parse(x.startedAt!) - Date.parse(y.startedAt!),
    );
    assert.notEqual(s1!.runId, s2!.runId);
    assert.ok(
      Date.parse(s2!.startedAt!) >= Date.parse(s1!.finishedAt!),
      `run 2 started ${s2!.startedAt}, after run 1 finished ${s1!.finishedAt}`,
    );
    assert.ok(
      [a, b].some((w) => /a backup of the same source is running; trying again/.test(w.stderr())),
      'the second run waited',
    );
    await bq.stopAll();
  });

  /** Tarballs big enough for a part to take a few seconds. */
});
