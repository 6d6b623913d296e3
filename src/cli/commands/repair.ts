import type { RegisterCommand } from './index.js';
import type { RepairResult } from '../../maintenance/repair.js';
import { UsageError } from '../../errors.js';
import { count, formatBytes } from '../../util/units.js';

export const registerRepair: RegisterCommand = (program, ctx) => {
  program
    .command('repair')
    .description(
      'replace objects missing, corrupt or forged on a target with copies from a target where they verify',
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
      const { retentionDaysOf } = await import('../../config/load.js');
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
        // A bad copy seen on a source is damage left behind unless that target was repaired too in this run.
        const healed = (x: { key: string; from: string }) =>
          results.some((r) => r.target === x.from && r.copied.some((c) => c.key === x.key));
        for (const r of results) r.elsewhere = r.elsewhere.filter((x) => !healed(x));
        const broken = results.some((r) => r.unrepairable.length || r.elsewhere.length);
        c.print(
          () =>
            results
              .map((r) =>
                [
                  `${r.target}: ${o.dryRun ? 'would copy' : 'copied'} ${count(r.copied.length, 'object')} (${formatBytes(r.bytes)})${r.unrepairable.length ? `, ${r.unrepairable.length} CANNOT be repaired` : ''}`,
                  ...r.copied.map(
                    (x) => `  ${x.reason} ${x.key} <- ${x.from}${x.why ? ` (was: ${x.why})` : ''}`,
                  ),
                  ...r.unrepairable.map((x) => `  UNREPAIRABLE ${x.key}: ${x.reason}`),
                  ...r.elsewhere.map(
                    (x) => `  DOES NOT VERIFY on ${x.from} (not copied): ${x.key}: ${x.reason}`,
                  ),
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
