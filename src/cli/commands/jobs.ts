import type { RegisterCommand } from './index.js';
import { wholeNumber } from '../numbers.js';
import { ExitCode, UsageError } from '../../errors.js';
import { formatDuration } from '../../util/units.js';
import type { JobsStatus } from '../../../jobs/status.js';
import { SCHEDULED_JOBS, type JobSummary, type ScheduledJob } from '../../../jobs/types.js';

function ago(iso: string | undefined): string {
  if (!iso) return '-';
  const ms = Date.now() - Date.parse(iso);
  return ms >= 0 ? `${formatDuration(ms)} ago` : `in ${formatDuration(-ms)}`;
}

function text(s: JobsStatus): string {
  const lines: string[] = [
    `mode: ${s.mode === 'bullmq' ? 'BullMQ (queue.redis)' : 'in-process (node-cron)'}`,
  ];
  lines.push('', 'schedules:');
  if (!s.schedules.length) lines.push('  none (no `schedule:` in the configuration)');
  for (const x of s.schedules)
    lines.push(
      `  ${x.job.padEnd(7)} ${x.pattern.padEnd(16)} ${x.timezone}  next ${x.next ?? '-'} (${ago(x.next ?? undefined)})${x.installed === false ? '  NOT INSTALLED: start a worker' : ''}`,
    );
  lines.push('', 'running:');
  if (!s.running.length) lines.push('  nothing');
  for (const r of s.running)
    lines.push(
      `  ${r.job}${r.part ? ` ${r.part}` : ''}  ${r.id}  since ${r.started ?? '?'} (${ago(r.started)})${r.worker ? `  on ${r.worker}` : ''}${r.runId ? `  run ${r.runId}` : ''}`,
    );
  if (s.waiting?.length) {
    lines.push('', 'waiting:');
    for (const w of s.waiting)
      lines.push(`  ${w.job}  ${w.id}  ${w.state}${w.runAt ? ` until ${w.runAt}` : ''}`);
  }
  lines.push('', 'failed (newest first):');
  if (!s.failed.length) lines.push('  none');
  for (const f of s.failed)
    lines.push(
      `  ${f.time}  ${f.job}${f.id ? ` ${f.id}` : ''}${f.attempts ? ` after ${f.attempts} attempt(s)` : ''}: ${f.error}`,
    );
  lines.push('', 'last runs:');
  if (!s.last.length) lines.push('  none recorded');
  for (const j of s.last) {
    lines.push(
      `  ${`${j.job} ${j.source}`.padEnd(24)} ${j.lastStatus.padEnd(8)} ${j.lastRun} (${ago(j.lastRun)})${j.lastSuccess ? `; last success ${ago(j.lastSuccess)}` : '; never succeeded'}${j.lastError ? `; ${j.lastError}` : ''}`,
    );
  }
  if (s.queue)
    lines.push(
      '',
      `queue: ${Object.entries(s.queue)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
  return lines.join('\n');
}

export const registerJobs: RegisterCommand = (program, ctx) => {
  const jobs = program
    .command('jobs')
    .description('show the schedules and their next runs, running and failed jobs, and the last outcomes')
    .action(async () => {
      const { jobsStatus } = await import('../../../jobs/status.js');
      const c = ctx();
      const { config } = c.config();
      const s = await jobsStatus(config);
      c.print(() => text(s), s);
    });
  jobs
    .command('run <job>')
    .description(
      `run a job now: ${SCHEDULED_JOBS.join(', ')} (queued for the workers with queue.redis, else run in this process)`,
    )
    .option('-s, --source <name...>', 'backup: only these sources')
    .option('-t, --target <name...>', 'drill: only these targets')
    .option('--wait', 'queue: wait until the job (a backup: its whole run) has finished')
    .option(
      '--timeout <seconds>',
      'with --wait: give up after this long (default 3600)',
      wholeNumber('--timeout', 1),
    )
    .action(
      async (job: string, o: { source?: string[]; target?: string[]; wait?: boolean; timeout?: number }) => {
        const { BullmqDriver } = await import('../../../jobs/bullmq.js');
        const { createEnv } = await import('../../../jobs/env.js');
        const { InProcessDriver } = await import('../../../jobs/inprocess.js');
        const { waitForJob } = await import('../../../jobs/status.js');
        const c = ctx();
        const { config, path } = c.config();
        if (!(SCHEDULED_JOBS as readonly string[]).includes(job))
          throw new UsageError(`no job ${JSON.stringify(job)}: one of ${SCHEDULED_JOBS.join(', ')}`);
        const data = {
          ...(o.source ? { sources: o.source } : {}),
          ...(o.target ? { targets: o.target } : {}),
        };
        const env = createEnv(config, { logger: c.log, configPath: path });
        let summary: JobSummary;
        try {
          if (config.queue) {
            const driver = new BullmqDriver(env, { process: false });
            try {
              summary = await driver.trigger(job as ScheduledJob, data);
            } finally {
              await driver.stop(0);
            }
            if (o.wait) summary = await waitForJob(config, String(summary.id), (o.timeout ?? 3600) * 1000);
          } else {
            summary = await new InProcessDriver(env).trigger(job as ScheduledJob, data);
          }
        } finally {
          await env.close();
        }
        c.print(() => `${summary.job}: ${summary.status}: ${summary.message}`, summary);
        process.exitCode =
          summary.status === 'failed'
            ? ExitCode.integrity
            : summary.status === 'partial'
              ? summary.exitCode === ExitCode.source
                ? ExitCode.source // a backup that could not read a source, as `regbackup backup`
                : ExitCode.partial
              : ExitCode.ok;
      },
    );
};
