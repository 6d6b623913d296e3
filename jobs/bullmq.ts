import os from 'node:os';
import {
  DelayedError,
  FlowProducer,
  Queue,
  UnrecoverableError,
  WaitingError,
  Worker,
  type FlowJob,
  type Job,
  type JobsOptions,
} from 'bullmq';
import type { Redis } from 'ioredis';
import type { PartOutcome } from '../src/backup/parts.js';
import type { StreamRef } from '../src/repo/stream-ref.js';
import { InterruptedError, messageOf, RegbackupError } from '../src/errors.js';
import { recordBackup, recordJob } from '../src/health/index.js';
import { redisConnection } from '../src/health/state.js';
import type { FailureRecord } from '../src/health/records.js';
import type { Driver } from './driver.js';
import type { JobEnv } from './env.js';
import {
  afterJob,
  backupPart,
  checkJob,
  commitRun,
  drillJob,
  failRun,
  pruneJob,
  startRun,
  type JobContext,
} from './processors.js';
import { schedulesOf } from './schedules.js';
import type {
  BackupJobData,
  CommitJobData,
  DrillJobData,
  JobName,
  JobSummary,
  PartJobData,
  RunData,
  ScheduledJob,
  Stage2JobData,
} from './types.js';

export const QUEUE_NAME = 'regbackup';

/** The job states counted for `status` and the queue gauges. */
export const JOB_STATES = [
  'waiting',
  'active',
  'delayed',
  'failed',
  'completed',
  'prioritized',
  'waiting-children',
] as const;

/**
 * The BullMQ driver (`queue.redis`): schedules are BullMQ job schedulers (upserted under a fixed ID by every
 * worker, so several workers on several hosts never double-schedule), and any number of workers process the
 * queue with `queue.concurrency` each. A job that fails is retried with exponential backoff
 * (`queue.attempts`, `queue.backoff`); a worker that dies mid-job stops renewing its lock and the job is
 * picked up by another once the lock expires (`queue.lockDuration`, BullMQ's stalled-job check). A job whose
 * source is busy (another run holds its lock) waits `queue.backoff` and tries again without using an attempt.
 *
 * A backup run is a flow: the `backup` job takes the sources' locks and plans the run, then adds
 *   backup-stage2  (parent)  <- backup-part × stage 1 (one per CouchDB database)
 * and `backup-stage2`, once they are done, reads their outcomes and adds
 *   backup-commit  (parent)  <- backup-part × stage 2 (tarball shards, with stage 1's expectations)
 * The commit writes the snapshot only when every part is done; a part that fails for good fails its parent
 * (nothing is committed; earlier snapshots are intact). Job IDs derive from the run's ID, so a step retried
 * after it added its flow does not add it twice.
 *
 * SIGTERM: the worker stops taking jobs, lets the running ones finish for `schedule.shutdownGrace`, then
 * interrupts them and hands them back to the queue (moved to waiting, no attempt used) for another worker.
 */
export class BullmqDriver implements Driver {
  readonly kind = 'bullmq' as const;
  readonly queue: Queue;
  private readonly flows: FlowProducer;
  private readonly connection: Redis;
  private worker?: Worker;
  private workerConnection?: Redis;
  private readonly active = new Map<string, AbortController>();
  private readonly q: NonNullable<JobEnv['config']['queue']>;

  constructor(
    private readonly env: JobEnv,
    private readonly opts: { concurrency?: number; process?: boolean } = {},
  ) {
    this.q = env.config.queue!;
    this.connection = redisConnection(this.q.redis);
    this.queue = new Queue(QUEUE_NAME, { connection: this.connection, prefix: this.q.prefix });
    this.flows = new FlowProducer({ connection: this.connection, prefix: this.q.prefix });
  }

  jobOptions(extra: JobsOptions = {}): JobsOptions {
    return {
      attempts: this.q.attempts,
      backoff: { type: 'exponential', delay: this.q.backoff },
      removeOnComplete: { age: 14 * 86400, count: 500 },
      removeOnFail: { age: 30 * 86400, count: 500 },
      ...extra,
    };
  }

  async start(): Promise<void> {
    await this.syncSchedulers();
    if (this.opts.process === false) return;
    this.workerConnection = redisConnection(this.q.redis);
    this.worker = new Worker(QUEUE_NAME, (job, token) => this.process(job, token), {
      connection: this.workerConnection,
      prefix: this.q.prefix,
      concurrency: this.opts.concurrency ?? this.q.concurrency,
      lockDuration: this.q.lockDuration,
      stalledInterval: this.q.lockDuration,
      maxStalledCount: 1,
      name: `${os.hostname()}:${process.pid}`,
    });
    this.worker.on('error', (err) => this.env.logger.error({ err: messageOf(err) }, 'BullMQ worker error'));
    this.worker.on('failed', (job, err) =>
      this.env.logger.warn(
        { job: job?.name, id: job?.id, attempts: job?.attemptsMade, err: messageOf(err) },
        `job ${job?.name ?? '?'} failed`,
      ),
    );
    this.env.logger.info(
      { concurrency: this.opts.concurrency ?? this.q.concurrency, prefix: this.q.prefix },
      'worker processing the BullMQ queue',
    );
  }

  /** Upserts one job scheduler per configured schedule (same ID everywhere: no double scheduling); removes ours no longer configured. */
  async syncSchedulers(): Promise<void> {
    const wanted = schedulesOf(this.env.config);
    for (const s of wanted) {
      await this.queue.upsertJobScheduler(
        s.id,
        { pattern: s.pattern, tz: s.timezone },
        { name: s.job, data: { trigger: 'schedule' }, opts: this.jobOptions() },
      );
      this.env.logger.info(
        { job: s.job, pattern: s.pattern, timezone: s.timezone },
        `scheduled ${s.job} (BullMQ job scheduler ${s.id})`,
      );
    }
    for (const js of await this.queue.getJobSchedulers()) {
      const id = js.key ?? js.id;
      if (id && id.startsWith('schedule-') && !wanted.some((w) => w.id === id)) {
        await this.queue.removeJobScheduler(id);
        this.env.logger.info({ scheduler: id }, 'removed a job scheduler no longer in the configuration');
      }
    }
  }

  async trigger(job: ScheduledJob, data: Record<string, unknown> = {}): Promise<JobSummary> {
    const j = await this.queue.add(job, { trigger: 'manual', ...data }, this.jobOptions());
    return { job, status: 'queued', message: `queued as job ${j.id}`, id: j.id };
  }

  private ctx(job: Job, abort: AbortController): JobContext {
    return {
      env: this.env,
      id: String(job.id),
      signal: abort.signal,
      logger: this.env.logger.child({ job: job.name, id: job.id }),
    };
  }

  /** Waits `queue.backoff` without using an attempt (the job's source is busy). */
  private async later(job: Job, token: string | undefined, why: string): Promise<never> {
    this.env.logger.info(
      { job: job.name, id: job.id },
      `${why}; trying again in ${Math.round(this.q.backoff / 1000)} s`,
    );
    await job.moveToDelayed(Date.now() + this.q.backoff, token);
    throw new DelayedError();
  }

  async process(job: Job, token?: string): Promise<unknown> {
    const abort = new AbortController();
    this.active.set(String(job.id), abort);
    const ctx = this.ctx(job, abort);
    const t0 = Date.now();
    ctx.logger.info(
      {
        attempt: job.attemptsMade + 1,
        ...((job.data as { part?: unknown }).part ? { part: (job.data as { part?: unknown }).part } : {}),
      },
      `${job.name} started`,
    );
    try {
      const out = await this.dispatch(ctx, job, token);
      ctx.logger.info(
        { durationMs: Date.now() - t0, status: (out as JobSummary | undefined)?.status },
        `${job.name} finished`,
      );
      return out;
    } catch (err) {
      if (err instanceof DelayedError || err instanceof WaitingError) throw err;
      if (abort.signal.aborted || err instanceof InterruptedError) {
        // Shutting down: hand the job back, untouched, for another worker (or this one once restarted).
        ctx.logger.warn(`interrupted: ${job.name} handed back to the queue`);
        await job.moveToWait(token);
        throw new WaitingError();
      }
      await this.onFailure(ctx, job, err);
      throw err;
    } finally {
      this.active.delete(String(job.id));
    }
  }

  private async dispatch(ctx: JobContext, job: Job, token: string | undefined): Promise<unknown> {
    switch (job.name as JobName) {
      case 'backup':
        return await this.startBackup(ctx, job, token);
      case 'backup-part':
        return await backupPart(ctx, job.data as PartJobData);
      case 'backup-stage2':
        return await this.stage2(ctx, job);
      case 'backup-commit': {
        const data = job.data as CommitJobData;
        const outcomes = this.ordered(data, Object.values(await job.getChildrenValues<PartOutcome>()), 2);
        return await commitRun(ctx, data, outcomes);
      }
      case 'drill': {
        const r = await drillJob(ctx, job.data as DrillJobData);
        if (r.busy) return await this.later(job, token, 'another drill is running');
        return r;
      }
      case 'prune': {
        const r = await pruneJob(ctx);
        if (r.busy) return await this.later(job, token, 'another prune is running');
        return r;
      }
      case 'check':
        return await checkJob(ctx);
      default:
        throw new UnrecoverableError(`unknown job ${job.name}`);
    }
  }

  /** Orders part outcomes as the plan lists the parts (children values come back unordered). */
  private ordered(data: RunData, outcomes: PartOutcome[], stage: 1 | 2): PartOutcome[] {
    const parts = stage === 1 ? data.plan.stage1 : data.plan.stage2;
    const at = (o: PartOutcome) => parts.findIndex((p) => JSON.stringify(p) === JSON.stringify(o.part));
    return [...outcomes].sort((a, b) => at(a) - at(b));
  }

  private partJob(run: RunData, i: number, stage: 1 | 2, expectations?: StreamRef[]): FlowJob {
    const part = (stage === 1 ? run.plan.stage1 : run.plan.stage2)[i]!;
    const data: PartJobData = { ...run, part, stage, ...(expectations?.length ? { expectations } : {}) };
    return {
      name: 'backup-part',
      queueName: QUEUE_NAME,
      data,
      opts: this.jobOptions({ jobId: `${run.plan.runId}-s${stage}-${i}`, failParentOnFailure: true }),
    };
  }

  private async startBackup(ctx: JobContext, job: Job, token: string | undefined): Promise<JobSummary> {
    const run = await startRun(ctx, job.data as BackupJobData);
    if (!run) return this.later(job, token, 'a backup of the same source is running');
    const { plan } = run;
    await this.flows.add({
      name: 'backup-stage2',
      queueName: QUEUE_NAME,
      data: run satisfies Stage2JobData,
      opts: this.jobOptions({ jobId: `${plan.runId}-stage2` }),
      children: plan.stage1.map((_, i) => this.partJob(run, i, 1)),
    });
    ctx.logger.info(
      { runId: plan.runId, stage1: plan.stage1.length, stage2: plan.stage2.length, targets: plan.targets },
      'backup planned',
    );
    return {
      job: 'backup',
      status: 'queued',
      message: `run ${plan.runId}: ${plan.stage1.length} database part(s), then ${plan.stage2.length} tarball part(s)`,
      runId: plan.runId,
    };
  }

  private async stage2(ctx: JobContext, job: Job): Promise<JobSummary> {
    const run = job.data as Stage2JobData;
    const stage1 = this.ordered(run, Object.values(await job.getChildrenValues<PartOutcome>()), 1);
    const expectations = stage1.map((o) => o.expectations).filter((e): e is StreamRef => Boolean(e));
    const data: CommitJobData = { ...run, stage1 };
    await this.flows.add({
      name: 'backup-commit',
      queueName: QUEUE_NAME,
      data,
      opts: this.jobOptions({ jobId: `${run.plan.runId}-commit` }),
      children: run.plan.stage2.map((_, i) => this.partJob(run, i, 2, expectations)),
    });
    ctx.logger.info(
      { runId: run.plan.runId, stage2: run.plan.stage2.length },
      'stage 1 done; tarball parts queued',
    );
    return {
      job: 'backup-stage2',
      status: 'queued',
      message: `${stage1.length} database part(s) done; ${run.plan.stage2.length} tarball part(s) queued`,
      runId: run.plan.runId,
    };
  }

  /** A failure: recorded once the job has used its attempts (a backup run's failure ends the run). */
  private async onFailure(ctx: JobContext, job: Job, err: unknown): Promise<void> {
    const attempts = job.opts.attempts ?? 1;
    const final = job.attemptsMade + 1 >= attempts || err instanceof UnrecoverableError;
    if (!final) {
      ctx.logger.warn(
        { attempt: job.attemptsMade + 1, attempts, err: messageOf(err) },
        `${job.name} failed; retried with backoff`,
      );
      return;
    }
    try {
      await this.env.state.push(
        'failures',
        {
          time: new Date().toISOString(),
          job: job.name,
          id: String(job.id),
          error: messageOf(err),
          attempts: job.attemptsMade + 1,
        } satisfies FailureRecord,
        50,
      );
      const name = job.name as JobName;
      if (name === 'backup-part' || name === 'backup-stage2' || name === 'backup-commit')
        await failRun(ctx, job.data as RunData, err);
      else if (name === 'backup') {
        const sources =
          (job.data as BackupJobData).sources ??
          [...this.env.config.sources.couchdb, ...this.env.config.sources.tarballs].map((s) => s.name);
        await recordBackup(this.env.state, { error: err, started: job.processedOn ?? Date.now(), sources });
        await afterJob(ctx);
      } else if (name === 'prune' || name === 'check') {
        if (!(err instanceof RegbackupError))
          await recordJob(this.env.state, {
            job: name,
            source: name === 'prune' ? 'repository' : 'all',
            status: 'failed',
            error: messageOf(err),
          });
      }
    } catch (e) {
      ctx.logger.error({ err: messageOf(e) }, 'recording a failure failed');
    }
  }

  async stop(graceMs: number): Promise<void> {
    if (this.worker) {
      const closing = this.worker.close();
      const timer = setTimeout(() => {
        if (this.active.size)
          this.env.logger.warn(
            { jobs: [...this.active.keys()] },
            'the grace period is over: interrupting the running jobs and handing them back',
          );
        for (const a of this.active.values()) a.abort();
      }, graceMs);
      await closing;
      clearTimeout(timer);
    }
    await this.flows.close();
    await this.queue.close();
    for (const c of [this.workerConnection, this.connection])
      await c
        ?.quit()
        .catch((err: unknown) => this.env.logger.debug({ err: messageOf(err) }, 'closing Redis'));
  }

  interrupt(): void {
    for (const a of this.active.values()) a.abort();
  }

  async queueCounts(): Promise<Record<string, number>> {
    return this.queue.getJobCounts(...JOB_STATES);
  }
}
