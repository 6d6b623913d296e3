import type { RegisterCommand } from './index.js';
import { wholeNumber } from '../numbers.js';
import { UsageError, messageOf } from '../../errors.js';
import { formatDuration } from '../../util/units.js';
import type { DrillReport } from '../../../restore/drill-report.js';

interface Row {
  id: string;
  key: string;
  time: string;
  ok?: boolean;
  durationMs?: number;
  standby?: DrillReport['standby'];
  targets?: {
    target: string;
    ok: boolean;
    rtoMs?: number;
    rpoMs?: number;
    snapshot?: string;
    failed: string[];
  }[];
  error?: string;
}

export const registerDrills: RegisterCommand = (program, ctx) => {
  program
    .command('drills')
    .description('list the restore drill reports stored in the repository (with RTO and RPO per target)')
    .option('-t, --target <name>', 'the target to read (default: the first that answers)')
    .option('--show <id>', 'print one report in full: an ID (or unique prefix) or "latest"')
    .option('-n, --last <n>', 'only the newest n reports', wholeNumber('--last', 1))
    .action(async (o: { target?: string; show?: string; last?: number }) => {
      const { openRepository } = await import('../open.js');
      const { drillRecords, formatDrillReport, listDrills, loadDrill } =
        await import('../../../restore/drill-report.js');
      const c = ctx();
      const { repo } = await openRepository(c, { target: o.target });
      try {
        const store = repo.targets[0]!;
        let infos = await listDrills(store);
        if (o.show) {
          const hit = o.show === 'latest' ? infos.slice(-1) : infos.filter((i) => i.id.startsWith(o.show!));
          if (hit.length !== 1)
            throw new UsageError(
              hit.length ? `drill ID ${o.show} is ambiguous` : `no drill report ${o.show} on ${store.name}`,
            );
          const r = await loadDrill(repo, store, hit[0]!);
          c.print(() => formatDrillReport(r), r);
          return;
        }
        if (o.last && o.last > 0) infos = infos.slice(-o.last);
        const rows: Row[] = [];
        for (const info of infos) {
          try {
            const r = await loadDrill(repo, store, info);
            rows.push({
              id: info.id,
              key: info.key,
              time: r.time,
              ok: r.ok,
              durationMs: r.durationMs,
              standby: r.standby,
              targets: drillRecords(r).map((d) => ({
                target: d.target,
                ok: d.ok,
                rtoMs: d.rtoMs,
                rpoMs: d.rpoMs,
                snapshot: d.snapshot,
                failed: d.failed,
              })),
            });
          } catch (err) {
            rows.push({ id: info.id, key: info.key, time: info.time.toISOString(), error: messageOf(err) });
          }
        }
        c.print(
          () => {
            if (!rows.length) return `no drill reports on ${store.name} (run \`regbackup drill\`)`;
            const lines: string[] = [];
            for (const r of rows) {
              if (r.error) {
                lines.push(`${r.id.slice(0, 12)}  ${r.time}  UNREADABLE: ${r.error}`);
                continue;
              }
              const per = (r.targets ?? [])
                .map(
                  (t) =>
                    `${t.target} ${t.ok ? 'ok' : 'FAILED'} RTO ${t.rtoMs !== undefined ? formatDuration(t.rtoMs) : 'not reached'} RPO ${t.rpoMs !== undefined ? formatDuration(t.rpoMs) : '-'}`,
                )
                .join('; ');
              lines.push(`${r.id.slice(0, 12)}  ${r.time}  ${r.ok ? 'PASSED' : 'FAILED'}  ${per}`);
              for (const t of r.targets ?? [])
                for (const f of t.failed.slice(0, 3)) lines.push(`    ${t.target}: ${f}`);
            }
            return lines.join('\n');
          },
          { target: store.name, drills: rows },
        );
      } finally {
        repo.close();
      }
    });
};
