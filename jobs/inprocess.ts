import { randomBytes } from 'node:crypto';
import cron, { type ScheduledTask } from 'node-cron';
import { InterruptedError, messageOf } from '../src/errors.js';
import { runningRecord, type FailureRecord } from '../src/health/records.js';
import type { Driver } from './driver.js';
import type { JobEnv } from './env.js';
import { backupInProcess, checkJob, drillJob, pruneJob, type JobContext } from './processors.js';
import { schedulesOf } from './schedules.js';
import type { BackupJobData, DrillJobData, JobSummary, ScheduledJob } from './types.js';

/**
 * The embedded driver (no `queue:`): node-cron fires the schedule in this process, in the configured time
 * zone; each job runs here, a backup as plan → parts → commit in one process. A firing while the same job
 * still runs is skipped (node-cron's noOverlap, and the source locks). Running jobs are recorded in the
 * state file (for `regbackup jobs`).
 */
export class InProcessDriver implements Driver {
  readonly kind = 'in-process' as const;
  private readonly tasks: ScheduledTask[] = [];
  private readonly running = new Map<
    string,
    { job: ScheduledJob; abort: AbortController; done: Promise<unknown> }
  >();
  private stopping = false;

  constructor(private readonly env: JobEnv) {}

  async start(): Promise<void> {
    for (const s of schedulesOf(this.env.config)) {
      const task = cron.createTask(
        s.pattern,
        async () => {
          if (this.stopping) return;
          await this.run(s.job, { trigger: 'schedule' }).catch((err: unknown) => {
            if (!(err instanceof InterruptedError))
              this.env.logger.error({ job: s.job, err: messageOf(err) }, `scheduled ${s.job} failed`);
          });
        },
        { timezone: s.timezone, noOverlap: true, name: s.id, logger: this.cronLogger(s.job) },
      );
      await task.start();
      this.tasks.push(task);
      this.env.logger.info(
        { job: s.job, pattern: s.pattern, timezone: s.timezone, next: task.getNextRun()?.toISOString() },
        `scheduled ${s.job}`,
      );
    }
  }

  /** node-cron's messages into our log (it would otherwise print its own colored lines). */
  private cronLogger(job: ScheduledJob) {
    const l = this.env.logger.child({ job, from: 'node-cron' });
    const text = (m: string | Error) => (typeof m === 'string' ? m : m.message);
    return {
      info: (m: string) => l.debug(m),
      warn: (m: string) =>
        l.info(/overlap/i.test(m) ? `skipped a firing: the previous ${job} is still running` : m),
      error: (m: string | Error, err?: Error) => l.error({ err: err?.message }, text(m)),
      debug: (m: string | Error) => l.debug(text(m)),
    };
  }

  trigger(job: ScheduledJob, data: Record<string, unknown> = {}): Promise<JobSummary> {
    return this.run(job, { trigger: 'manual', ...data });
  }

  /** Runs one job in this process and records it while it runs. */
  async run(job: ScheduledJob, data: Record<string, unknown>): Promise<JobSummary> {
    const id = `${job}-${Date.now()}-${randomBytes(3).toString('hex')}`;
    const abort = new AbortController();
    const logger = this.env.logger.child({ job, id });
    const ctx: JobContext = { env: this.env, id, signal: abort.signal, logger };
    await this.env.state.set(`running:${id}`, runningRecord(id, job));
    const started = Date.now();
    logger.info(`${job} started`);
    const done = (async () => {
      switch (job) {
        case 'backup':
          return backupInProcess(ctx, data as BackupJobData);
        case 'drill':
          return drillJob(ctx, data as DrillJobData);
        case 'prune':
          return pruneJob(ctx);
        case 'check':
          return checkJob(ctx);
      }
    })();
    // stop() only waits for it; its outcome (and error) is handled by the `await done` below.
    this.running.set(id, { job, abort, done: done.catch(() => undefined) });
    try {
      const summary = await done;
      logger.info(
        { status: summary.status, durationMs: Date.now() - started },
        `${job} finished: ${summary.message}`,
      );
      return summary;
    } catch (err) {
      if (!(err instanceof InterruptedError)) {
        await this.env.state.push(
          'failures',
          {
            time: new Date().toISOString(),
            job,
            id,
            error: messageOf(err),
            attempts: 1,
          } satisfies FailureRecord,
          50,
        );
      }
      logger.error({ err: messageOf(err), durationMs: Date.now() - started }, `${job} failed`);
      throw err;
    } finally {
      this.running.delete(id);
      await this.env.state.delete(`running:${id}`);
    }
  }

  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    for (const t of this.tasks) await t.destroy();
    if (!this.running.size) return;
    this.env.logger.info(
      { jobs: [...this.running.values()].map((r) => r.job), graceMs },
      'waiting for the running jobs to finish',
    );
    const timer = setTimeout(() => {
      this.env.logger.warn(
        'the grace period is over: interrupting the running jobs (the next scheduled run does them again)',
      );
      for (const r of this.running.values()) r.abort.abort();
    }, graceMs);
    await Promise.all([...this.running.values()].map((r) => r.done));
    clearTimeout(timer);
  }

  interrupt(): void {
    for (const r of this.running.values()) r.abort.abort();
  }

  async queueCounts(): Promise<Record<string, number>> {
    return { active: this.running.size };
  }
}
