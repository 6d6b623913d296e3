import type { RegisterCommand } from './index.js';
import { fraction } from '../numbers.js';
import type { PruneReport } from '../../maintenance/prune.js';
import { parseDuration, formatBytes, formatDuration } from '../../util/units.js';

export const registerPrune: RegisterCommand = (program, ctx) => {
  program
    .command('prune')
    .description(
      'delete data no snapshot needs (marked first, deleted by a later run after the grace period)',
    )
    .option('--dry-run', 'report what is unneeded; mark and delete nothing')
    .option('--grace <duration>', 'override prune.grace (e.g. 24h; 0 only when no backup can be running)')
    .option('--repack-threshold <fraction>', 'override prune.repackThreshold', fraction('--repack-threshold'))
    .option(
      '--identity <file>',
      'the restore identity: also rewrite mostly-unneeded data packs (the worker key alone rewrites only listing packs)',
    )
    .action(async (o: { dryRun?: boolean; grace?: string; repackThreshold?: number; identity?: string }) => {
      // Loaded when the command runs: --help and the other commands start fast.
      const { openRepository } = await import('../open.js');
      const { prune } = await import('../../maintenance/prune.js');
      const c = ctx();
      const { config } = c.config();
      const { repo } = await openRepository(c, { identity: o.identity });
      try {
        const grace = o.grace !== undefined ? parseDuration(o.grace) : undefined;
        const r = await prune(config, repo, {
          logger: c.log,
          dryRun: o.dryRun,
          grace,
          repackThreshold: o.repackThreshold,
        });
        c.print(() => formatPruneReport(r), r);
      } finally {
        repo.close();
      }
    });
};

/** The text report of a prune run (also printed by `forget --prune`). */
export function formatPruneReport(r: PruneReport): string {
  const lines = [
    `${r.packs.total} packs; unneeded ${r.packs.unneeded} (${formatBytes(r.packs.unneededBytes)}), mostly unneeded ${r.packs.sparse}, not in any index ${r.packs.orphaned}`,
    `references: ${r.references.snapshots} snapshots, ${r.references.listingChunksRead}/${r.references.listingChunks} listing chunks read, ${r.references.entries} entries`,
  ];
  if (r.deferred) {
    lines.push(
      `another prune is deleting in this repository (since ${r.deferred.since}, host ${r.deferred.host}): this run deleted and marked nothing; the next run does`,
    );
  } else if (!r.dryRun) {
    lines.push(
      `marked now: ${r.marked.packs} packs (${formatBytes(r.marked.bytes)}) to delete, ${r.marked.repack} to rewrite — deleted by a prune run after the grace period`,
    );
    lines.push(`acted on ${r.executed} earlier mark(s):`);
    for (const t of r.targets) {
      lines.push(
        `  ${t.target}: deleted ${t.deletedPacks} packs, freed ${formatBytes(t.freedBytes)}, rewrote ${t.repackedPacks} packs and ${t.rewrittenIndexObjects} index objects${t.keptYoung ? `, kept ${t.keptYoung} young packs (storage-class minimum)` : ''}${t.keptRetention ? `, kept ${t.keptRetention} under retention` : ''}`,
      );
    }
  }
  lines.push(`took ${formatDuration(r.durationMs)}`);
  return lines.join('\n');
}
