import { before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { loadIntoCouch } from '../generate/couch.js';
import { writeRegistry } from '../generate/registry.js';
import { QUEUE_NAME } from '../../jobs/bullmq.js';
import { makeFixture, spawnWorker, type JobsFixture, type WorkerProcess } from './fixture.js';

export interface Summary {
  status: string;
  runId?: string;
  snapshot?: string;
  startedAt?: string;
  finishedAt?: string;
  parts?: number;
}

export interface SnapshotRow {
  id: string;
  sources: {
    name: string;
    files?: number;
    bytes?: number;
    databases?: { name: string; docCount: number; deletedCount?: number }[];
  }[];
}

/** One fixture for a BullMQ suite: the registry (two databases), Redis, a queue handle, worker processes. */
export function useBullmqFixture() {
  let f = undefined as unknown as JobsFixture;
  let redis = undefined as unknown as Redis;
  let queue = undefined as unknown as Queue;
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
  // A test that fails leaves no worker behind to take the next test's jobs.
  afterEach(stopAll);
  after(async () => {
    await stopAll();
    await queue.close();
    await redis.quit();
    await f.stop();
  });

  /** Tarballs big enough for a part to take a few seconds (new random content each time). */
  const bigTarballs = (n = 40) => {
    for (let i = 0; i < n; i++) {
      const d = path.join(f.registryDir, 'tarballs', `zz-big-${i}`, '-');
      mkdirSync(d, { recursive: true });
      writeFileSync(
        path.join(d, `zz-big-${i}-1.0.0.tgz`),
        Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(3_000_000)]),
      );
    }
  };
  const dropBigTarballs = () => {
    for (let i = 0; i < 80; i++)
      rmSync(path.join(f.registryDir, 'tarballs', `zz-big-${i}`), { recursive: true, force: true });
  };

  return {
    get f() {
      return f;
    },
    get queue() {
      return queue;
    },
    workers,
    config,
    worker,
    stopAll,
    jobsOf,
    lastSnapshot,
    shape,
    bigTarballs,
    dropBigTarballs,
  };
}
