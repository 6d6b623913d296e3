import type { RegisterCommand } from './index.js';
import { wholeNumber } from '../numbers.js';
import { count, formatBytes } from '../../util/units.js';

const usd = (n: number) => `$${n < 10 ? n.toFixed(4) : n.toFixed(2)}`;

export const registerCost: RegisterCommand = (program, ctx) => {
  program
    .command('cost')
    .description(
      'stored bytes, objects and estimated monthly cost per target; requests of recent runs; savings',
    )
    .option('--runs <n>', 'how many recent runs to account for (default 24)', wholeNumber('--runs', 1))
    .action(async (o: { runs?: number }) => {
      // Loaded when the command runs: --help and the other commands start fast.
      const { openRepository } = await import('../open.js');
      const { costReport } = await import('../../maintenance/cost.js');
      const c = ctx();
      const { config } = c.config();
      const { repo } = await openRepository(c);
      try {
        const r = await costReport(config, repo, { recentRuns: o.runs });
        c.print(() => {
          const lines = r.targets.map(
            (t) =>
              `${t.target} (${t.type}, ${t.storageClass}): ${formatBytes(t.bytes)} in ${count(t.objects, 'object')} → ${usd(t.storagePerMonth)}/month at $${t.price.storagePerGBMonth}/GB; last ${count(t.recentRuns, 'run')}: ${t.recentRequests.put} PUT, ${t.recentRequests.get} GET, ${t.recentRequests.list} LIST → ${usd(t.requestCost)}`,
          );
          lines.push(`total storage: ${usd(r.monthlyTotal)}/month`);
          if (r.latest)
            lines.push(
              `newest snapshot stands for ${formatBytes(r.latest.logicalBytes)}; a target holds ${formatBytes(r.latest.storedBytes)} for all snapshots (${r.latest.ratio.toFixed(1)}x)`,
            );
          lines.push(
            `last ${count(r.recent.runs, 'run')} read ${formatBytes(r.recent.bytesIn)}: deduplication saved ${formatBytes(r.recent.dedupSaved)}, compression ${formatBytes(r.recent.compressionSaved)}`,
          );
          return lines.join('\n');
        }, r);
      } finally {
        repo.close();
      }
    });
};
