import type { Config } from '../config/schema.js';
import { InterruptedError } from '../errors.js';
import { log as rootLog, type Logger } from '../log.js';
import type { StreamRef } from '../repo/stream-ref.js';
import type { WriterOptions } from '../repo/writer.js';
import type { ObjectStore } from '../store/types.js';
import { commitBackup, PrunedDuringRunError, runPart, type BackupResult, type PartOutcome } from './parts.js';
import { openSession, planBackup } from './plan.js';
import { Progress } from '../util/progress.js';

export type { BackupResult, SourceSummary, TargetReport } from './parts.js';

export interface BackupOptions {
  /** Only these sources (by name); default all. */
  sources?: string[];
  /** Worker threads for packing. */
  workers?: number;
  progress?: Progress;
  signal?: AbortSignal;
  logger?: Logger;
  /** The targets' stores (default: opened from the configuration). */
  stores?: ObjectStore[];
  /** Test hook of the blob writer (WriterOptions.beforeFileBatch). */
  beforeFileBatch?: WriterOptions['beforeFileBatch'];
}

/**
 * One backup run in this process: one snapshot of the configured sources, written to every target in one
 * pass. The same plan / parts / commit steps the BullMQ workers share out (jobs/), done one after the other:
 * catch up targets that missed earlier runs; back up each CouchDB database; then the tarball stores (after
 * the packuments, so every tarball a backed-up packument names should be present); then the snapshot. A
 * source that cannot be read is carried over from the previous snapshot and reported; a target that fails is
 * left behind and reported; either makes the run partial (exit status 6).
 */
export async function runBackup(config: Config, opts: BackupOptions = {}): Promise<BackupResult> {
  const logger = opts.logger ?? rootLog();
  const progress = opts.progress ?? new Progress();
  try {
    // A prune that deleted, while the run went on, packs it reused makes it refuse to commit: a new run
    // (a new plan, which sees the deletion) stores that data again. Tried a few times, then reported.
    for (let attempt = 1; ; attempt++) {
      try {
        return await attemptBackup(config, opts, logger, progress);
      } catch (err) {
        if (!(err instanceof PrunedDuringRunError) || attempt >= BACKUP_ATTEMPTS) throw err;
        logger.warn({ err: err.message }, 'a prune deleted data this run reused; running the backup again');
      }
    }
  } finally {
    progress.stop();
  }
}

/** Runs of one backup at most, while prunes keep deleting what it reused. */
const BACKUP_ATTEMPTS = 3;

async function attemptBackup(
  config: Config,
  opts: BackupOptions,
  logger: Logger,
  progress: Progress,
): Promise<BackupResult> {
  const signal = opts.signal ?? new AbortController().signal;
  const interrupted = () =>
    new InterruptedError(
      'backup interrupted; nothing of this run was committed, earlier snapshots are intact',
    );
  progress.phase = 'plan';
  const plan = await planBackup(config, { sources: opts.sources, logger, stores: opts.stores });
  const session = await openSession(config, plan.targets, {
    workers: opts.workers,
    stores: opts.stores,
    beforeFileBatch: opts.beforeFileBatch,
    signal,
  });
  try {
    const outcomes: PartOutcome[] = [];
    for (const part of plan.stage1) {
      if (signal.aborted) throw interrupted();
      outcomes.push(await runPart(config, plan, part, session, { progress, signal, logger }));
    }
    const expectations = outcomes.map((o) => o.expectations).filter((e): e is StreamRef => Boolean(e));
    // The tarball parts read the expectations just written: make them readable.
    if (expectations.length) await session.writer.flush();
    for (const part of plan.stage2) {
      if (signal.aborted) throw interrupted();
      outcomes.push(await runPart(config, plan, part, session, { progress, signal, logger, expectations }));
    }
    if (signal.aborted) throw interrupted();
    progress.phase = 'commit';
    return await commitBackup(config, plan, outcomes, session, logger, signal);
  } finally {
    await session.close();
  }
}
