import type { RegisterCommand } from './index.js';
import { wholeNumber } from '../numbers.js';
import { UsageError } from '../../errors.js';
import { formatDuration } from '../../util/units.js';

export const registerWorker: RegisterCommand = (program, ctx) => {
  program
    .command('worker')
    .description(
      'run the schedule (backups, drills, retention): in this process with node-cron, or through BullMQ with queue.redis',
    )
    .option(
      '--concurrency <n>',
      'jobs this worker runs at once (BullMQ; default queue.concurrency)',
      wholeNumber('--concurrency', 1),
    )
    .option('--schedule-only', 'BullMQ: install the job schedulers and exit without processing jobs')
    .action(async (o: { concurrency?: number; scheduleOnly?: boolean }) => {
      const { startWorker } = await import('../../../jobs/worker.js');
      const c = ctx();
      const { config, path } = c.config();
      if (!config.schedule && !config.queue)
        c.log.warn(
          'the configuration has no `schedule:`: this worker will run nothing (it still serves metrics and checks health)',
        );
      if (o.scheduleOnly && !config.queue)
        throw new UsageError(
          '--schedule-only needs `queue.redis` (without a queue, the schedule lives in the worker process)',
        );
      const w = await startWorker(config, {
        logger: c.log,
        configPath: path,
        concurrency: o.concurrency,
        process: !o.scheduleOnly,
      });
      if (o.scheduleOnly) {
        await w.stop(0);
        c.print('job schedulers installed', { installed: true });
        return;
      }
      c.log.info(
        { mode: w.driver.kind, metrics: w.metrics ? `${w.metrics.url}/metrics` : undefined },
        `worker started (${w.driver.kind})`,
      );
      const sig = await new Promise<NodeJS.Signals>((resolve) => {
        process.once('SIGTERM', () => resolve('SIGTERM'));
        process.once('SIGINT', () => resolve('SIGINT'));
      });
      const grace = config.schedule?.shutdownGrace ?? 20_000;
      c.log.info(
        `${sig}: stopping; running jobs get ${formatDuration(grace)} to finish, then are interrupted${config.queue ? ' and handed back to the queue' : ''} (again to stop now)`,
      );
      const again = () => {
        c.log.warn('second signal: interrupting the running jobs now');
        w.driver.interrupt();
      };
      process.once('SIGTERM', again);
      process.once('SIGINT', again);
      await w.stop(grace);
      process.off('SIGTERM', again);
      process.off('SIGINT', again);
      process.exitCode = 0;
    });
};
