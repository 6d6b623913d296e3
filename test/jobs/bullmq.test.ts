import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { loadIntoCouch } from '../../bench/generate/couch.js';
import { writeRegistry } from '../../bench/generate/registry.js';
import { QUEUE_NAME } from '../../jobs/bullmq.js';
import type { JobsStatus } from '../../jobs/status.js';
import { makeFixture, spawnWorker, until, type JobsFixture, type WorkerProcess } from './fixture.js';

interface Summary {
  status: string;
  runId?: string;
  snapshot?: string;
  startedAt?: string;
  finishedAt?: string;
  parts?: number;
}

interface SnapshotRow {
  id: string;
  sources: {
    name: string;
    files?: number;
    bytes?: number;
    databases?: { name: string; docCount: number; deletedCount?: number }[];
  }[];
}

describe('the worker with BullMQ: schedulers, scale-out, no overlap, stalled jobs, SIGTERM', () => {
  let f: JobsFixture;
  let redis: Redis;
  let queue: Queue;
  const workers: WorkerProcess[] = [];
  const config = (o: { schedule?: string; shards?: number; grace?: string } = {}) =>
    f.writeConfig(`queue: { redis: "${f.redis!.url}", concurrency: 1, attempts: 3, backoff: 1s, lockDuration: 2s, tarballShards: ${o.shards ?? 3} }
schedule: { ${o.schedule ?? ''}timezone: UTC, shutdownGrace: ${o.grace ?? '20s'} }
`);
  const worker = (env: NodeJS.ProcessEnv = {}) => {
    const w = spawnWorker({ ...f.env, ...env });
    workers.push(w);
    return w;
  };
  const stopAll = async () => {
    for (const w of workers.splice(0)) {
      if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGTERM');
      await w.exited;
    }
  };
  const jobsOf = async (name: string): Promise<Job[]> =>
    (await queue.getJobs(['completed', 'failed', 'active', 'waiting', 'delayed'], 0, 1000)).filter(
      (j) => j.name === name,
    );
  const lastSnapshot = async (target: string): Promise<SnapshotRow> => {
    const r = await f.cli(['snapshots', '--json', '--target', target]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { snapshots: SnapshotRow[] }).snapshots.at(-1)!;
  };
  const shape = (s: SnapshotRow) =>
    s.sources.map((x) => ({
      name: x.name,
      files: x.files,
      bytes: x.bytes,
      dbs: x.databases?.map((d) => [d.name, d.docCount]),
    }));

  before(async () => {
    f = await makeFixture({ packages: 24, redis: true });
    // A second database, so that stage 1 has two parts.
    const second = path.join(f.dir, 'registry2');
    await writeRegistry({ out: second, packages: 8, seed: 9, maxVersionsPerPackage: 3, tarballVersions: 1 });
    await loadIntoCouch(f.couch.url, 'registry2', second);
    redis = new Redis(f.redis!.url, { maxRetriesPerRequest: null });
    queue = new Queue(QUEUE_NAME, { connection: redis, prefix: 'regbackup' });
    config();
  });
  after(async () => {
    await stopAll();
    await queue.close();
    await redis.quit();
    await f.stop();
  });

  test('two worker processes share the parts of one run; the snapshot is whole', async () => {
    // The reference: the same sources backed up in one process.
    const ref = await f.cli(['backup', '--json']);
    assert.equal(ref.code, 0, ref.stderr);
    const reference = shape(await lastSnapshot('local'));

    const a = worker();
    const b = worker();
    await Promise.all([a.waitFor(/worker started/), b.waitFor(/worker started/)]);
    const r = await f.cli(['jobs', 'run', 'backup', '--wait', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as Summary;
    assert.equal(s.status, 'ok', r.stdout);
    assert.equal(s.parts, 2 + 3, 'two databases, three tarball shards');

    const parts = (await jobsOf('backup-part')).filter(
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
      const snap = await lastSnapshot(target);
      assert.equal(snap.id, s.snapshot);
      assert.deepEqual(
        shape(snap),
        reference,
        `the run's snapshot on ${target} holds what a one-process backup holds`,
      );
    }

    const js = await f.cli(['jobs', '--json']);
    assert.equal(js.code, 0, js.stderr);
    const status = JSON.parse(js.stdout) as JobsStatus;
    assert.equal(status.mode, 'bullmq');
    assert.ok(status.last.some((j) => j.job === 'backup' && j.source === 'skimdb' && j.lastStatus === 'ok'));
    assert.equal(status.queue!.failed, 0);
    await stopAll();
  });

  test('several workers upsert the same schedulers: one scheduler per job, one job per firing', async () => {
    config({ schedule: "check: '* * * * * *', ", grace: '5s' });
    const a = worker();
    const b = worker();
    const c = worker();
    await Promise.all([a, b, c].map((w) => w.waitFor(/worker started/)));
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 5000));
    const schedulers = await queue.getJobSchedulers();
    assert.deepEqual(
      schedulers.map((x) => x.key ?? x.id),
      ['schedule-check'],
    );
    const checks = (await jobsOf('check')).filter((j) => j.timestamp >= t0 - 1000);
    const fired = new Set(checks.map((j) => j.id));
    assert.equal(fired.size, checks.length);
    // One job per second at most (three workers scheduling would make three).
    assert.ok(checks.length >= 3 && checks.length <= 7, `${checks.length} check jobs in ~5 s`);
    const js = JSON.parse((await f.cli(['jobs', '--json'])).stdout) as JobsStatus;
    assert.deepEqual(
      js.schedules.map((x) => [x.job, x.installed]),
      [['check', true]],
    );
    assert.ok(js.schedules[0]!.next);
    await stopAll();
    await queue.removeJobScheduler('schedule-check');
    config();
  });

  test('two backups of the same sources at once never overlap', async () => {
    const a = worker();
    const b = worker();
    await Promise.all([a.waitFor(/worker started/), b.waitFor(/worker started/)]);
    const [r1, r2] = await Promise.all([
      f.cli(['jobs', 'run', 'backup', '--wait', '--json']),
      f.cli(['jobs', 'run', 'backup', '--wait', '--json']),
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
    await stopAll();
  });

  /** Tarballs big enough for a part to take a few seconds. */
  const bigTarballs = () => {
    for (let i = 0; i < 40; i++) {
      const d = path.join(f.registryDir, 'tarballs', `zz-big-${i}`, '-');
      mkdirSync(d, { recursive: true });
      writeFileSync(
        path.join(d, `zz-big-${i}-1.0.0.tgz`),
        Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(3_000_000)]),
      );
    }
  };
  const dropBigTarballs = () => {
    for (let i = 0; i < 40; i++)
      rmSync(path.join(f.registryDir, 'tarballs', `zz-big-${i}`), { recursive: true, force: true });
  };

  test('a worker killed (SIGKILL) mid-part: another worker picks the part up, and the run commits a whole snapshot', async () => {
    config({ shards: 1 });
    bigTarballs();
    try {
      const a = worker();
      await a.waitFor(/worker started/);
      const queued = JSON.parse((await f.cli(['jobs', 'run', 'backup', '--json'])).stdout) as { id: string };
      await a.waitFor(/"part":\{"kind":"tarballs"[^\n]*backup-part started/, 60_000);
      await new Promise((r) => setTimeout(r, 300));
      a.child.kill('SIGKILL');
      await a.exited;
      const b = worker();
      await b.waitFor(/worker started/);
      const run = await until(
        async () => (await queue.getJob(queued.id))?.returnvalue as Summary | undefined,
        'the run job',
        30_000,
      );
      const commit = await until(
        async () => {
          const j = await queue.getJob(`${run.runId}-commit`);
          return j && (await j.getState()) === 'completed' ? j : undefined;
        },
        'the commit',
        60_000,
      );
      const part = (await queue.getJob(`${run.runId}-s2-0`))!;
      assert.equal(await part.getState(), 'completed');
      assert.ok(
        part.processedBy?.endsWith(`:${b.pid}`),
        `the part was finished by the second worker (${part.processedBy})`,
      );
      assert.ok(b.stderr().includes(`"id":"${run.runId}-s2-0"`));
      const snap = await lastSnapshot('local');
      assert.equal(snap.id, (commit.returnvalue as Summary).snapshot);
      const tb = snap.sources.find((x) => x.name === 'tarballs')!;
      assert.ok(tb.files! >= 40, 'the big tarballs are in the snapshot');
      await stopAll();
    } finally {
      dropBigTarballs();
    }
  });

  test('SIGTERM: a job that cannot finish in the grace period is handed back (no attempt used); the worker exits 0', async () => {
    config({ shards: 1, grace: '1s' });
    bigTarballs();
    try {
      const a = worker();
      await a.waitFor(/worker started/);
      const queued = JSON.parse((await f.cli(['jobs', 'run', 'backup', '--json'])).stdout) as { id: string };
      await a.waitFor(/"part":\{"kind":"tarballs"[^\n]*backup-part started/, 60_000);
      a.child.kill('SIGTERM');
      const exit = await a.exited;
      assert.equal(exit.code, 0, a.stderr().slice(-2000));
      assert.match(a.stderr(), /interrupted: backup-part handed back to the queue/);
      const run = (await queue.getJob(queued.id))!.returnvalue as Summary;
      const part = (await queue.getJob(`${run.runId}-s2-0`))!;
      assert.equal(await part.getState(), 'waiting');
      assert.equal(part.attemptsMade, 0);

      // Another worker finishes the run.
      const b = worker();
      await until(
        async () => {
          const j = await queue.getJob(`${run.runId}-commit`);
          return j && (await j.getState()) === 'completed';
        },
        'the commit',
        60_000,
      );
      assert.ok((await queue.getJob(`${run.runId}-s2-0`))!.processedBy?.endsWith(`:${b.pid}`));

      // A short job in the grace period is finished, not handed back.
      config({ shards: 1, grace: '60s' });
      await stopAll();
      const c = worker();
      await c.waitFor(/worker started/);
      const q2 = JSON.parse((await f.cli(['jobs', 'run', 'backup', '--json'])).stdout) as { id: string };
      await c.waitFor(/"part":\{"kind":"tarballs"[^\n]*backup-part started/, 60_000);
      c.child.kill('SIGTERM');
      assert.equal((await c.exited).code, 0);
      const run2 = (await queue.getJob(q2.id))!.returnvalue as Summary;
      assert.equal(await (await queue.getJob(`${run2.runId}-s2-0`))!.getState(), 'completed');
      assert.doesNotMatch(c.stderr(), /interrupted: backup-part handed back/);
    } finally {
      dropBigTarballs();
    }
  });
});
