import os from 'node:os';
import { Queue, type Job } from 'bullmq';
import type { Config } from '../src/config/schema.js';
import { messageOf, TargetError } from '../src/errors.js';
import { log } from '../src/log.js';
import { readRecords, type FailureRecord, type JobRecord } from '../src/health/records.js';
import { openStateStore, pingRedis, redisConnection, RedisStateStore } from '../src/health/state.js';
import { JOB_STATES, QUEUE_NAME } from './bullmq.js';
import { nextRuns, schedulesOf } from './schedules.js';
import type { JobSummary } from './types.js';
import { processAlive } from '../src/util/process.js';

/** What `regbackup jobs` shows: schedules and their next runs, running and failed jobs, the last outcomes. */
export interface JobsStatus {
  mode: 'in-process' | 'bullmq';
  schedules: {
    job: string;
    pattern: string;
    timezone: string;
    next: string | null;
    nextRuns: string[];
    installed?: boolean;
  }[];
  running: { id: string; job: string; started?: string; worker?: string; runId?: string; part?: string }[];
  failed: { id?: string; job: string; time: string; error: string; attempts?: number }[];
  waiting?: { id: string; job: string; state: string; runAt?: string }[];
  queue?: Record<string, number>;
  last: JobRecord[];
  locks?: Record<string, string>;
}

function describePart(job: Job): { runId?: string; part?: string } {
  const d = job.data as {
    plan?: { runId?: string };
    part?: { kind: string; source: string; db?: string; index?: number; count?: number };
  };
  const p = d.part;
  return {
    ...(d.plan?.runId ? { runId: d.plan.runId } : {}),
    ...(p
      ? {
          part:
            p.kind === 'couchdb'
              ? `${p.source}/${p.db}`
              : `${p.source} ${(p.index ?? 0) + 1}/${p.count ?? 1}`,
        }
      : {}),
  };
}

export async function jobsStatus(config: Config): Promise<JobsStatus> {
  const schedules = schedulesOf(config).map((s) => {
    const runs = nextRuns(s, 3).map((d) => d.toISOString());
    return { job: s.job, pattern: s.pattern, timezone: s.timezone, next: runs[0] ?? null, nextRuns: runs };
  });
  if (!config.queue) {
    const state = openStateStore(config);
    try {
      const rec = await readRecords(state);
      const failures = await state.list<FailureRecord>('failures');
      return {
        mode: 'in-process',
        schedules,
        running: rec.running
          .filter((r) => r.host !== os.hostname() || processAlive(r.pid))
          .map((r) => ({ id: r.id, job: r.job, started: r.started, worker: `${r.host}:${r.pid}` })),
        failed: failures
          .slice(0, 20)
          .map((f) => ({ id: f.id, job: f.job, time: f.time, error: f.error, attempts: f.attempts })),
        last: rec.jobs,
      };
    } finally {
      await state.close();
    }
  }
  const q = config.queue;
  const redis = redisConnection(q.redis);
  const queue = new Queue(QUEUE_NAME, { connection: redis, prefix: q.prefix });
  try {
    try {
      await pingRedis(redis);
    } catch (err) {
      throw new TargetError(`cannot reach Redis (queue.redis): ${messageOf(err)}`);
    }
    const installed = await queue.getJobSchedulers();
    for (const s of schedules) {
      const js = installed.find((j) => (j.key ?? j.id) === `schedule-${s.job}`);
      Object.assign(s, {
        installed: Boolean(js),
        ...(js?.next ? { next: new Date(js.next).toISOString() } : {}),
      });
    }
    const [active, failed, delayed, waiting, counts] = await Promise.all([
      queue.getActive(0, 99),
      queue.getFailed(0, 19),
      queue.getDelayed(0, 49),
      queue.getWaiting(0, 49),
      queue.getJobCounts(...JOB_STATES),
    ]);
    const state = new RedisStateStore(redis, q.prefix, false);
    const rec = await readRecords(state);
    const locks: Record<string, string> = {};
    for (const k of await redis.keys(`${q.prefix}:lock:*`)) {
      const v = await redis.get(k);
      if (v) locks[k.slice(`${q.prefix}:lock:`.length)] = v;
    }
    return {
      mode: 'bullmq',
      schedules,
      running: active.map((j) => ({
        id: String(j.id),
        job: j.name,
        ...(j.processedOn ? { started: new Date(j.processedOn).toISOString() } : {}),
        ...(j.processedBy ? { worker: j.processedBy } : {}),
        ...describePart(j),
      })),
      failed: failed.map((j) => ({
        id: String(j.id),
        job: j.name,
        time: new Date(j.finishedOn ?? j.timestamp).toISOString(),
        error: j.failedReason,
        attempts: j.attemptsMade,
      })),
      waiting: [
        ...waiting.map((j) => ({ id: String(j.id), job: j.name, state: 'waiting' })),
        ...delayed.map((j) => ({
          id: String(j.id),
          job: j.name,
          state: 'delayed',
          runAt: new Date(j.timestamp + (j.delay ?? 0)).toISOString(),
        })),
      ],
      queue: counts,
      last: rec.jobs,
      locks,
    };
  } finally {
    await queue.close();
    await redis
      .quit()
      .catch((err: unknown) => log().debug({ err: messageOf(err) }, 'closing the Redis connection'));
  }
}

/** A finished job, read after it finished, and whether it failed. */
interface Settled {
  job: Job;
  failed: boolean;
}

/** Waits for a queued job (and, for a backup, its whole run: the commit) to finish; returns its summary. */
export async function waitForJob(config: Config, id: string, timeoutMs: number): Promise<JobSummary> {
  const q = config.queue!;
  const redis = redisConnection(q.redis);
  const queue = new Queue(QUEUE_NAME, { connection: redis, prefix: q.prefix });
  const deadline = Date.now() + timeoutMs;
  /**
   * The job once it has finished, read after its state says so: a job read before (then its state asked)
   * may be a copy from before it finished, without its return value. A job removed meanwhile (the queue's
   * `removeOnComplete`/`removeOnFail` limits) is reported as such, never read as null.
   */
  const settle = async (jobId: string, existed: boolean): Promise<Settled | 'removed' | undefined> => {
    let seen = existed;
    for (;;) {
      const state = await queue.getJobState(jobId);
      if (state !== 'unknown') seen = true;
      if (state === 'completed' || state === 'failed') {
        const job = await queue.getJob(jobId);
        return job ? { job, failed: state === 'failed' } : 'removed';
      }
      if (state === 'unknown' && seen) return 'removed';
      if (Date.now() > deadline) return undefined;
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  const removed = (jobId: string): JobSummary => ({
    job: 'backup',
    status: 'failed',
    message: `job ${jobId} finished, but the queue removed it before its result could be read: see \`regbackup jobs status\``,
  });
  const timedOut = (what: string): JobSummary => ({
    job: 'backup',
    status: 'queued',
    message: `${what} has not finished within ${Math.round(timeoutMs / 1000)} s`,
  });
  try {
    const settled = await settle(id, true);
    if (!settled) return timedOut(`job ${id}`);
    if (settled === 'removed') return removed(id);
    let { job, failed } = settled;
    const first = job.returnvalue as JobSummary | null | undefined;
    if (job.name === 'backup' && first?.runId) {
      for (const next of ['stage2', 'commit']) {
        const jobId = `${String(first.runId)}-${next}`;
        const j = await settle(jobId, false);
        if (!j) return { ...timedOut(`run ${String(first.runId)}`), runId: first.runId };
        if (j === 'removed') return removed(jobId);
        ({ job, failed } = j);
        if (failed) break;
      }
    }
    if (failed)
      return { job: job.name as JobSummary['job'], status: 'failed', message: job.failedReason, id: job.id };
    const summary = job.returnvalue as JobSummary | null | undefined;
    if (!summary || typeof summary !== 'object')
      return {
        job: job.name as JobSummary['job'],
        status: 'failed',
        message: `job ${String(job.id)} completed without a result`,
        id: job.id,
      };
    return summary;
  } finally {
    await queue.close();
    await redis
      .quit()
      .catch((err: unknown) => log().debug({ err: messageOf(err) }, 'closing the Redis connection'));
  }
}
