import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { RegisterCommand } from './index.js';
import type { Config } from '../../config/schema.js';
import { InterruptedError, messageOf, SourceError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { wholeNumber } from '../numbers.js';
import type { BackupResult } from '../../backup/run.js';
import { count, formatBytes, formatDuration } from '../../util/units.js';

function summary(r: BackupResult): string {
  const s = r.stats;
  const lines: string[] = [];
  lines.push(
    r.snapshot ? `snapshot ${r.snapshot.id.slice(0, 12)} at ${r.snapshot.time}` : 'no snapshot written',
  );
  lines.push(
    `read ${formatBytes(s.bytesIn ?? 0)}: new ${formatBytes(s.newBytes ?? 0)} (stored as ${formatBytes(s.storedBytes ?? 0)}), deduplicated ${formatBytes(s.dedupBytes ?? 0)}; ${count(s.packs ?? 0, 'pack')} in ${formatDuration(s.durationMs)}`,
  );
  for (const src of r.sources) {
    const carried = src.carriedFrom ? ` (NOT READ: carried over from ${src.carriedFrom.slice(0, 12)})` : '';
    if (src.kind === 'couchdb') {
      lines.push(`${src.name}: CouchDB${carried}`);
      for (const d of src.databases ?? []) {
        lines.push(
          `  ${d.name}: ${count(d.docCount, 'doc')}, ${d.deletedCount} deleted, ${d.conflictCount} with conflicts, seq ${String(d.seq).slice(0, 24)} (${d.mode}${d.fullReason ? `: ${d.fullReason}` : ''})`,
        );
      }
    } else lines.push(`${src.name}: ${count(src.files, 'file')}, ${formatBytes(src.bytes ?? 0)}${carried}`);
  }
  for (const t of r.targets) {
    lines.push(
      `target ${t.name}: ${t.status === 'ok' ? 'ok' : `BEHIND (${t.error ?? 'failed'})`}, wrote ${formatBytes(t.bytesWritten)}${t.caughtUp ? `, caught up ${count(t.caughtUp.objects, 'object')}` : ''}`,
    );
  }
  const shown = r.findings.slice(0, 20);
  for (const f of shown) lines.push(`${f.severity}: ${f.source}: ${f.message}`);
  if (r.findings.length > shown.length)
    lines.push(`… and ${r.findings.length - shown.length} more findings (--json lists them)`);
  return lines.join('\n');
}

export const registerBackup: RegisterCommand = (program, ctx) => {
  program
    .command('backup')
    .description('take a snapshot of the configured sources and write it to every target')
    .option('-s, --source <name...>', 'only these sources')
    .option(
      '--workers <n>',
      'worker threads for compression and encryption (default: cores)',
      wholeNumber('--workers'),
    )
    .action(async (o: { source?: string[]; workers?: number }) => {
      // Loaded when the command runs: --help and the other commands start fast.
      const { runBackup } = await import('../../backup/run.js');
      const { Progress } = await import('../../util/progress.js');
      const c = ctx();
      const { config } = c.config();
      // The worker's source locks: a backup run by hand never overlaps a scheduled one of the same source.
      const held = await takeSourceLocks(config, o.source, c.log);
      const abort = new AbortController();
      const onSignal = (sig: NodeJS.Signals) => {
        c.log.warn(`${sig}: stopping; nothing of this run will be committed, earlier snapshots stay intact`);
        abort.abort();
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const progress = new Progress(c.interactive ? process.stderr : undefined);
      const { recordBackupByHand } = await import('../../health/index.js');
      const run = { started: Date.now(), sources: held.names };
      try {
        let r: BackupResult;
        try {
          r = await runBackup(config, {
            sources: o.source,
            workers: o.workers,
            progress,
            signal: abort.signal,
            logger: c.log,
          });
        } catch (err) {
          // Where check-health reads it, as the worker's runs: a failed run by hand or from cron is seen.
          if (!(err instanceof InterruptedError))
            await recordBackupByHand(config, { ...run, error: err }, c.log);
          throw err;
        }
        await recordBackupByHand(config, { ...run, result: r }, c.log);
        c.print(() => summary(r), r);
        process.exitCode = r.exitCode;
      } finally {
        await held.release();
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
};

/**
 * Takes the locks the worker takes for these sources (Redis with `queue.redis`, else files in the cache),
 * renewed while the run lasts. Held by another run: a SourceError naming the sources. Redis unreachable:
 * a warning, and the backup goes on without locks (a backup by hand must not depend on the queue).
 */
async function takeSourceLocks(
  config: Config,
  sources: string[] | undefined,
  log: Logger,
): Promise<{ names: string[]; release(): Promise<void> }> {
  const { keepRenewing, LOCK_TTL, openLocks, sourceLockKeys } = await import('../../../jobs/locks.js');
  const { selectedSources } = await import('../../backup/plan.js');
  const { couch, tarballs } = selectedSources(config, sources);
  const names = [...couch, ...tarballs].map((s) => s.name);
  const keys = sourceLockKeys(names);
  let service: Awaited<ReturnType<typeof openLocks>>;
  try {
    service = await openLocks(config);
  } catch (err) {
    log.warn(
      { err: messageOf(err) },
      'cannot reach the lock service (queue.redis); backing up without the source locks',
    );
    return { names, release: async () => {} };
  }
  const { locks } = service;
  const owner = `cli-${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  if (!(await locks.acquire(keys, owner, LOCK_TTL))) {
    const held = await locks.held();
    await service.close();
    const busy = names.filter((n) => held[`source:${n}`]);
    throw new SourceError(
      `a backup of ${busy.join(', ')} is running (${busy.map((n) => held[`source:${n}`]).join(', ')}); wait for it to finish, or back up other sources with --source`,
    );
  }
  const stopRenewing = keepRenewing(
    locks,
    keys,
    owner,
    () => log.warn({ keys }, 'a source lock of this run was taken by another run (it expired meanwhile)'),
    (err: unknown) => log.warn({ err: messageOf(err) }, 'cannot renew the source locks'),
  );
  return {
    names,
    async release() {
      stopRenewing();
      try {
        await locks.release(keys, owner);
      } catch (err) {
        log.warn({ err: messageOf(err) }, 'cannot release the source locks (they expire by themselves)');
      } finally {
        await service.close();
      }
    },
  };
}
