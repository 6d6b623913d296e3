import type { RegisterCommand } from './index.js';
import type { RepairResult } from '../../maintenance/repair.js';
import { UsageError } from '../../errors.js';
import { formatBytes } from '../../util/units.js';

export const registerRepair: RegisterCommand = (program, ctx) => {
  program
    .command('repair')
    .description(
      'copy objects missing or corrupt on a target from a target where they verify (no decryption)',
    )
    .option('--from <target>', 'copy only from this target (default: any other)')
    .option('--to <target>', 'repair only this target (default: every target)')
    .option(
      '--read-data',
      'also download and hash every pack of the repaired target (finds same-size corruption)',
    )
    .option('--dry-run', 'report what would be copied')
    .action(async (o: { from?: string; to?: string; readData?: boolean; dryRun?: boolean }) => {
      // Loaded when the command runs: --help and the other commands start fast.
      const { openRepository } = await import('../open.js');
      const { repairTarget } = await import('../../maintenance/repair.js');
      const { retentionDaysOf } = await import('../../backup/plan.js');
      const c = ctx();
      const { config } = c.config();
      for (const n of [o.from, o.to])
        if (n && !config.targets.some((t) => t.name === n)) throw new UsageError(`no target named ${n}`);
      const { repo } = await openRepository(c);
      try {
        const all = repo.targets;
        const results: RepairResult[] = [];
        for (const to of all.filter((t) => !o.to || t.name === o.to)) {
          const sources = all.filter((t) => t !== to && (!o.from || t.name === o.from));
          if (sources.length === 0) continue;
          results.push(
            await repairTarget(repo, to, sources, {
              logger: c.log,
              readData: o.readData,
              dryRun: o.dryRun,
              retentionDays: retentionDaysOf(config).get(to.name),
            }),
          );
        }
        const broken = results.some((r) => r.unrepairable.length);
        c.print(
          () =>
            results
              .map((r) =>
                [
                  `${r.target}: ${o.dryRun ? 'would copy' : 'copied'} ${r.copied.length} objects (${formatBytes(r.bytes)})${r.unrepairable.length ? `, ${r.unrepairable.length} CANNOT be repaired` : ''}`,
                  ...r.copied.map((x) => `  ${x.reason} ${x.key} <- ${x.from}`),
                  ...r.unrepairable.map((x) => `  UNREPAIRABLE ${x.key}: ${x.reason}`),
                ].join('\n'),
              )
              .join('\n'),
          { targets: results },
        );
        process.exitCode = broken ? 5 : 0;
      } finally {
        repo.close();
      }
    });
};
