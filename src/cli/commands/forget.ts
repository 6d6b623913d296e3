import type { RegisterCommand } from './index.js';
import { wholeNumber } from '../numbers.js';
import type { RetentionPolicy } from '../../maintenance/retention.js';
import type { PruneReport } from '../../maintenance/prune.js';
import { UsageError } from '../../errors.js';
import { formatPruneReport } from './prune.js';

export const registerForget: RegisterCommand = (program, ctx) => {
  program
    .command('forget')
    .description(
      'delete the snapshots the retention policy does not keep (their data goes at the next prune)',
    )
    .option('--keep-last <n>', 'keep the newest N snapshots', wholeNumber('--keep-last'))
    .option(
      '--keep-hourly <n>',
      'keep one snapshot for each of the last N hours',
      wholeNumber('--keep-hourly'),
    )
    .option('--keep-daily <n>', 'keep one snapshot for each of the last N days', wholeNumber('--keep-daily'))
    .option(
      '--keep-weekly <n>',
      'keep one snapshot for each of the last N weeks',
      wholeNumber('--keep-weekly'),
    )
    .option(
      '--keep-monthly <n>',
      'keep one snapshot for each of the last N months',
      wholeNumber('--keep-monthly'),
    )
    .option(
      '--keep-yearly <n>',
      'keep one snapshot for each of the last N years',
      wholeNumber('--keep-yearly'),
    )
    .option('--dry-run', 'list what would go and why each kept snapshot is kept; delete nothing')
    .option('--prune', "then prune in the same run (as `regbackup prune` with the configuration's settings)")
    .action(
      async (o: {
        keepLast?: number;
        keepHourly?: number;
        keepDaily?: number;
        keepWeekly?: number;
        keepMonthly?: number;
        keepYearly?: number;
        dryRun?: boolean;
        prune?: boolean;
      }) => {
        // Loaded when the command runs: --help and the other commands start fast.
        const { openRepository } = await import('../open.js');
        const { forget } = await import('../../maintenance/forget.js');
        const c = ctx();
        if (o.prune && o.dryRun)
          throw new UsageError(
            'forget --prune --dry-run cannot say what prune would free before the snapshots are gone: run `regbackup forget --dry-run`',
          );
        const { config } = c.config();
        const r = config.retention;
        const policy: RetentionPolicy = {
          last: o.keepLast ?? r?.last ?? 0,
          hourly: o.keepHourly ?? r?.hourly ?? 0,
          daily: o.keepDaily ?? r?.daily ?? 0,
          weekly: o.keepWeekly ?? r?.weekly ?? 0,
          monthly: o.keepMonthly ?? r?.monthly ?? 0,
          yearly: o.keepYearly ?? r?.yearly ?? 0,
        };
        const { repo } = await openRepository(c);
        try {
          const res = await forget(repo, policy, { dryRun: o.dryRun, logger: c.log });
          let pruned: PruneReport | undefined;
          if (o.prune) {
            const { prune } = await import('../../maintenance/prune.js');
            pruned = await prune(config, repo, { logger: c.log, dryRun: o.dryRun });
          }
          c.print(
            () => {
              const lines = res.decisions.map(
                (d) =>
                  `${d.keep ? 'keep  ' : o.dryRun ? 'would forget' : d.deleted ? 'forgot' : 'FAILED'} ${d.id.slice(0, 12)}  ${d.time.toISOString()}  [${d.sources.join(', ')}]${d.keep ? `  (${d.reasons.join('; ')})` : ''}${d.error ? `  ${d.error}` : ''}`,
              );
              lines.push(
                `${res.kept} kept, ${res.forgotten} ${o.dryRun ? 'would be forgotten' : 'forgotten'}${o.dryRun ? ' (dry run)' : pruned ? '' : '; run `regbackup prune` to free their data'}`,
              );
              if (pruned) lines.push('', 'prune:', formatPruneReport(pruned));
              return lines.join('\n');
            },
            { policy, dryRun: Boolean(o.dryRun), ...res, ...(pruned ? { prune: pruned } : {}) },
          );
          if (res.decisions.some((d) => d.error)) process.exitCode = 6;
        } finally {
          repo.close();
        }
      },
    );
};
