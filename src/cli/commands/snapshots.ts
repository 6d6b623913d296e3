import type { RegisterCommand } from './index.js';
import { count, formatBytes } from '../../util/units.js';
import type { SnapshotInfo } from '../../repo/snapshot.js';

interface Row {
  id: string;
  time: string;
  host?: string;
  parent?: string;
  sources: {
    name: string;
    kind: string;
    carriedFrom?: unknown;
    databases?: { name: string; seq: unknown; docCount: number; mode: string; carriedFrom?: unknown }[];
    files?: number;
    bytes?: number;
  }[];
  stats?: Record<string, number>;
  error?: string;
}

/** A source or database not read in the run, carried over from the snapshot it was last read in. */
function carried(from: unknown): string {
  return typeof from === 'string' ? `NOT READ, carried over from ${from.slice(0, 12)}` : '';
}

export const registerSnapshots: RegisterCommand = (program, ctx) => {
  program
    .command('snapshots')
    .description('list the snapshots of a target, oldest first')
    .option('-t, --target <name>', 'the target to list (default: the first that answers)')
    .action(async (o: { target?: string }) => {
      // Loaded when the command runs: --help and the other commands start fast.
      const { openRepository } = await import('../open.js');
      const { inTakenOrder, listSnapshots, loadOnce, loadSnapshot } = await import('../../repo/snapshot.js');
      const c = ctx();
      const { repo } = await openRepository(c, { target: o.target });
      try {
        const store = repo.targets[0]!;
        const rows: Row[] = [];
        // This target's own copy: a bad one is damage to name (and repair), even where another target's verifies.
        const load = loadOnce((info: SnapshotInfo) => loadSnapshot(repo, store, info, { only: true }));
        const list = await inTakenOrder(await listSnapshots(store), async (info) => (await load(info)).time);
        for (const info of list) {
          try {
            const m = await load(info);
            rows.push({
              id: info.id,
              time: m.time,
              host: m.host,
              parent: m.parent,
              sources: m.sources as Row['sources'],
              stats: m.stats,
            });
          } catch (err) {
            rows.push({
              id: info.id,
              time: info.time.toISOString(),
              sources: [],
              error: (err as Error).message,
            });
          }
        }
        c.print(
          () => {
            if (rows.length === 0) return `no snapshots on ${store.name}`;
            return rows
              .map((r) => {
                // A snapshot that does not verify is named in full: it is damage to repair, never a backup.
                if (r.error) return `${r.id}  ${r.time}  UNREADABLE: ${r.error}`;
                const what = r.sources
                  .map(
                    (s) =>
                      `${s.name}[${s.carriedFrom ? `${carried(s.carriedFrom)}: ` : ''}${
                        s.kind === 'couchdb'
                          ? (s.databases ?? [])
                              .map(
                                (d) =>
                                  `${d.name}: ${count(d.docCount, 'doc')} @${String(d.seq).slice(0, 16)}${d.carriedFrom && !s.carriedFrom ? ` (${carried(d.carriedFrom)})` : ''}`,
                              )
                              .join(', ')
                          : `${count(s.files, 'file')}, ${formatBytes(s.bytes ?? 0)}`
                      }]`,
                  )
                  .join(' ');
                return `${r.id.slice(0, 12)}  ${r.time}  ${what}`;
              })
              .join('\n');
          },
          { target: store.name, snapshots: rows },
        );
        const bad = rows.filter((r) => r.error);
        for (const r of bad)
          c.log.error(
            { target: store.name, snapshot: r.id, err: r.error },
            `snapshot ${r.id} on ${store.name} does not verify: it cannot be restored (\`regbackup repair\` replaces it from a target where it verifies)`,
          );
        // Listing a snapshot that does not verify is an integrity failure (exit 5), like `check`.
        if (bad.length) process.exitCode = 5;
      } finally {
        repo.close();
      }
    });
};
