import type { RegisterCommand } from './index.js';
import { fraction } from '../numbers.js';
import type { PruneReport } from '../../maintenance/prune.js';
import { count, formatBytes, formatDuration, parseDuration } from '../../util/units.js';

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
    `${count(r.packs.total, 'pack')}; unneeded ${r.packs.unneeded} (${formatBytes(r.packs.unneededBytes)}), mostly unneeded ${r.packs.sparse}, not in any index ${r.packs.orphaned}`,
    `references: ${count(r.references.snapshots, 'snapshot')}, ${r.references.listingChunksRead}/${r.references.listingChunks} listing chunks read, ${r.references.entries} entries`,
  ];
  if (r.deferred) {
    lines.push(
      `another prune is deleting in this repository (since ${r.deferred.since}, host ${r.deferred.host}): this run deleted and marked nothing; the next run does`,
    );
  } else if (!r.dryRun) {
    lines.push(
      `marked now: ${count(r.marked.packs, 'pack')} (${formatBytes(r.marked.bytes)}) to delete, ${r.marked.repack} to rewrite — deleted by a prune run after the grace period`,
    );
    lines.push(`acted on ${r.executed} earlier mark(s):`);
    for (const t of r.targets) {
      lines.push(
        `  ${t.target}: deleted ${count(t.deletedPacks, 'pack')}, freed ${formatBytes(t.freedBytes)}, rewrote ${count(t.repackedPacks, 'pack')} and ${count(t.rewrittenIndexObjects, 'index object')}${t.keptYoung ? `, kept ${t.keptYoung} young packs (storage-class minimum)` : ''}${t.keptRetention ? `, kept ${t.keptRetention} under retention` : ''}`,
      );
    }
  }
  lines.push(`took ${formatDuration(r.durationMs)}`);
  return lines.join('\n');
}
