import type { CouchdbSourceConfig } from '../../config/schema.js';
import type { BackupContext, Finding, PartResult } from '../types.js';
import type { CouchSourceSnapshot, DbSnapshot } from '../../repo/format/source-snapshots.js';
import { IntegrityError } from '../../errors.js';
import { isSeq, SeqRefusedError } from './changes.js';
import { newRun, type DbBackupOptions, type DbStats } from './context.js';
import { dbInfo, incrementalBlocker, readRevsLimit, readSecurity } from './info.js';
import { storeExpectationsFile } from './merge.js';
import { attempt, type AttemptResult } from './rounds.js';

/** The outcome of one database: its snapshot entry, and the tarballs its packuments name (a sorted file). */
export interface DbOutcome {
  db: DbSnapshot;
  /** JSON lines of TarballExpectation in tarball-path order, in ctx.tmpDir (the caller stores and removes it). */
  expectationsFile?: string;
  findings: Finding[];
  stats: DbStats;
}

/**
 * Backs up one database (see docs/FORMAT.md §12.1, "CouchDB sources"): incremental from `previous` when it can
 * be, else full, with the reason in `fullReason` and an info finding. Throws DbGoneError when the database
 * does not exist (any more), CouchHttpError / SourceError when the server cannot be read.
 */
export async function backupDb(
  cfg: CouchdbSourceConfig,
  db: string,
  ctx: BackupContext,
  previous: DbSnapshot | undefined,
  opts: DbBackupOptions = {},
): Promise<DbOutcome> {
  const run = newRun(cfg, db, ctx, opts);
  const requestsBefore = run.client.requests;
  const info0 = await dbInfo(run);
  const security = await readSecurity(run);
  const revsLimit = await readRevsLimit(run);
  let fullReason: string | undefined;
  let result: AttemptResult | undefined;
  if (previous) {
    fullReason = incrementalBlocker(run, previous, info0);
    if (!fullReason) {
      try {
        const r = await attempt(run, info0, previous);
        if (r.ok) result = r;
        else fullReason = r.reason;
      } catch (err) {
        if (err instanceof SeqRefusedError) fullReason = err.message;
        else if (err instanceof IntegrityError)
          fullReason = `the previous listing cannot be read (${err.message})`;
        else throw err;
      }
    }
    if (!result) {
      run.findings.add({
        severity: 'info',
        code: 'fallback-full',
        object: db,
        message: `full read instead of an incremental one: ${fullReason}`,
      });
    }
  }
  // After an incremental attempt that was given up, the start of the full read needs a fresh GET /db.
  if (!result) result = await attempt(run, previous ? await dbInfo(run) : info0, undefined);

  const snap: DbSnapshot = {
    name: db,
    seq: result.seq,
    mode: previous && !fullReason ? 'incremental' : 'full',
    ...(previous && fullReason ? { fullReason } : {}),
    docCount: result.counts.docCount,
    deletedCount: result.counts.deletedCount,
    conflictCount: result.counts.conflictCount,
    attachmentCount: result.counts.attachmentCount,
    attachmentBytes: result.counts.attachmentBytes,
    bodyBytes: result.counts.bodyBytes,
    listing: result.listing!,
  };
  if (cfg.includeLocal) snap.localCount = result.counts.localCount;
  if (security) snap.security = security;
  if (revsLimit !== undefined) snap.revsLimit = revsLimit;
  if (info0.props && typeof info0.props === 'object' && !Array.isArray(info0.props)) {
    snap.props = info0.props as Record<string, unknown>;
  }
  // purge_seq as it was when the read started: a purge during the run then shows on the next one.
  const info: NonNullable<DbSnapshot['info']> = {};
  if (isSeq(result.startInfo.purge_seq)) info.purgeSeq = result.startInfo.purge_seq;
  if (typeof result.info.instance_start_time === 'string')
    info.instanceStartTime = result.info.instance_start_time;
  if (typeof result.info.uuid === 'string') info.uuid = result.info.uuid;
  snap.info = info;
  run.stats.requests = run.client.requests - requestsBefore;
  return {
    db: snap,
    expectationsFile: result.expectationsFile,
    findings: run.findings.all(),
    stats: run.stats,
  };
}

/**
 * Backs up one database of a CouchDB source. `previous` is this database's entry in an earlier snapshot
 * (incremental when possible). The result's snapshot is a CouchDB source snapshot with this one database.
 */
export async function backupDatabase(
  cfg: CouchdbSourceConfig,
  db: string,
  ctx: BackupContext,
  previous?: DbSnapshot,
  opts: DbBackupOptions = {},
): Promise<PartResult<CouchSourceSnapshot> & { db: DbSnapshot; stats: DbStats }> {
  const out = await backupDb(cfg, db, ctx, previous, opts);
  const expectations = out.expectationsFile
    ? await storeExpectationsFile(ctx, out.expectationsFile)
    : undefined;
  return {
    snapshot: { kind: 'couchdb', name: cfg.name, url: redactedUrl(cfg.url), databases: [out.db] },
    db: out.db,
    findings: out.findings,
    ...(expectations ? { expectations } : {}),
    stats: { ...out.stats },
  };
}

/** The configured URL without credentials (and without a trailing slash). */
export function redactedUrl(configured: string): string {
  try {
    const u = new URL(configured);
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    return u.toString().replace(/\/+$/, '');
  } catch {
    return '(invalid URL)';
  }
}
