import type { Config } from '../config/schema.js';
import { ExitCode, IntegrityError, InterruptedError, RegbackupError, SourceError } from '../errors.js';
import { deletedSince, loadMarks } from '../maintenance/marks.js';
import type { Logger } from '../log.js';
import { newManifest, sealSnapshot, type SourceSnapshot } from '../repo/snapshot.js';
import { chunkIds, refFromChunks, type StreamRef } from '../repo/stream-ref.js';
import type { WriterStats } from '../repo/writer.js';
import { backupDatabase, CouchHttpError, DbGoneError } from '../sources/couchdb/index.js';
import { backupTarballSource } from '../sources/tarballs/source.js';
import type { BackupPart, BackupPlan, Session } from './plan.js';
import { Progress } from '../util/progress.js';
import type { BackupContext, Finding } from '../sources/types.js';
import type {
  CouchSourceSnapshot,
  DbSnapshot,
  TarballSourceSnapshot,
} from '../repo/format/source-snapshots.js';

/** What one part of a run produced (plain JSON: it travels through BullMQ from a worker to the commit). */
export interface PartOutcome {
  part: BackupPart;
  /** The session (process) that did it. */
  sessionId: string;
  db?: DbSnapshot;
  tarballs?: TarballSourceSnapshot;
  expectations?: StreamRef;
  findings: Finding[];
  /** The whole source failed in this part (unreachable, credentials refused): carried over at commit. */
  sourceError?: string;
  /** This part's database could not be read (why; the finding `db-failed` says it too). */
  dbError?: string;
  /** Targets that failed while this part wrote. */
  behind: Record<string, string>;
  stats: Partial<WriterStats>;
  /** Packs this part deduplicated against (checked against prune executions at commit). */
  usedPacks: string[];
  /** Requests made to each target by this part (`requests.<target>.<op>` in the snapshot's stats). */
  requests: Record<string, number>;
}

/** Requests so far per target, flattened as `requests.<target>.<op>`. */
export function requestCounts(session: Session): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [t, m] of session.metrics)
    for (const [op, n] of Object.entries(m.snapshot().requests)) out[`requests.${t}.${op}`] = n;
  return out;
}

export interface PartOptions {
  /** Expectation streams of stage 1, for tarball parts. */
  expectations?: StreamRef[];
  progress?: Progress;
  signal?: AbortSignal;
  logger: Logger;
  /** Flush the writer at the end (a part done by its own process must; in-process runs flush once). */
  flush?: boolean;
}

/** Does one part of a planned run with `session`'s writer. */
export async function runPart(
  config: Config,
  plan: BackupPlan,
  part: BackupPart,
  session: Session,
  opts: PartOptions,
): Promise<PartOutcome> {
  const signal = opts.signal ?? new AbortController().signal;
  const prev = plan.previous[part.source];
  const ctx: BackupContext = {
    writer: session.writer,
    reader: session.reader,
    previous: prev?.entry,
    progress: opts.progress ?? new Progress(),
    log: opts.logger,
    tmpDir: session.tmpDir,
    signal,
  };
  const out: PartOutcome = {
    part,
    sessionId: session.id,
    findings: [],
    behind: {},
    stats: {},
    usedPacks: [],
    requests: {},
  };
  const before = { ...session.writer.stats };
  const requestsBefore = requestCounts(session);
  if (part.kind === 'couchdb') {
    const cfg = config.sources.couchdb.find((s) => s.name === part.source);
    if (!cfg) throw new SourceError(`no CouchDB source named ${part.source} in the configuration`);
    const prevDb = (prev?.entry as CouchSourceSnapshot | undefined)?.databases?.find(
      (d) => d.name === part.db,
    );
    ctx.progress.phase = `${part.source}/${part.db}`;
    try {
      const r = await backupDatabase(cfg, part.db, ctx, prevDb);
      out.db = r.db;
      out.findings.push(...r.findings);
      if (r.expectations) out.expectations = r.expectations;
    } catch (err) {
      if (err instanceof InterruptedError || !(err instanceof RegbackupError)) throw err;
      if (err instanceof DbGoneError) {
        out.findings.push({
          severity: 'error',
          code: 'db-gone',
          source: part.source,
          object: part.db,
          message: err.message,
        });
      } else if (err instanceof CouchHttpError && (err.status === 401 || err.status === 403)) {
        out.sourceError = err.message;
      } else {
        out.dbError = err.message;
        out.findings.push({
          severity: 'error',
          code: 'db-failed',
          source: part.source,
          object: part.db,
          message: `${err.message}${prevDb ? ' (its entry of the previous snapshot is kept)' : ''}`,
        });
        if (prevDb) out.db = { ...prevDb, carriedFrom: prevDb.carriedFrom ?? prev!.snapshot } as DbSnapshot;
      }
    }
  } else {
    const cfg = config.sources.tarballs.find((s) => s.name === part.source);
    if (!cfg) throw new SourceError(`no tarball source named ${part.source} in the configuration`);
    ctx.progress.phase = part.count > 1 ? `${part.source} ${part.index + 1}/${part.count}` : part.source;
    try {
      const r = await backupTarballSource(cfg, ctx, opts.expectations ?? [], undefined, part.shard);
      out.tarballs = r.snapshot;
      out.findings.push(...r.findings);
    } catch (err) {
      if (err instanceof InterruptedError || !(err instanceof SourceError)) throw err;
      out.sourceError = err.message;
    }
  }
  if (opts.flush) await session.writer.flush();
  for (const [t, e] of session.fanout.failed) out.behind[t] = e.message;
  for (const k of Object.keys(before) as (keyof WriterStats)[])
    out.stats[k] = session.writer.stats[k] - before[k];
  out.usedPacks = [...session.writer.usedPacks];
  for (const [k, v] of Object.entries(requestCounts(session))) out.requests[k] = v - (requestsBefore[k] ?? 0);
  return out;
}

export interface TargetReport {
  name: string;
  status: 'ok' | 'behind';
  error?: string;
  /** Bytes written to it by the committing process (packs, index objects, snapshot) and catch-up copies. */
  bytesWritten: number;
  caughtUp?: { objects: number; bytes: number };
}

export interface SourceSummary {
  name: string;
  kind: string;
  /** Carried over unchanged from an earlier snapshot because it could not be read this time. */
  carriedFrom?: string;
  databases?: Pick<
    DbSnapshot,
    | 'name'
    | 'seq'
    | 'mode'
    | 'fullReason'
    | 'docCount'
    | 'deletedCount'
    | 'conflictCount'
    | 'attachmentCount'
    | 'carriedFrom'
  >[];
  files?: number;
  bytes?: number;
}

export interface BackupResult {
  runId: string;
  snapshot?: { id: string; time: string; key: string };
  targets: TargetReport[];
  sources: SourceSummary[];
  findings: Finding[];
  stats: Partial<WriterStats> & { durationMs: number };
  exitCode: ExitCode;
}

const dbSummary = (d: DbSnapshot): NonNullable<SourceSummary['databases']>[number] => ({
  name: d.name,
  seq: d.seq,
  mode: d.mode,
  ...(d.fullReason ? { fullReason: d.fullReason } : {}),
  docCount: d.docCount,
  deletedCount: d.deletedCount,
  conflictCount: d.conflictCount,
  attachmentCount: d.attachmentCount,
  ...(d.carriedFrom ? { carriedFrom: d.carriedFrom } : {}),
});

/**
 * A prune deleted packs this run deduplicated against while it ran (the run was longer than the grace
 * period): nothing was committed. A new run (a new plan) no longer uses them: runBackup tries again.
 */
export class PrunedDuringRunError extends IntegrityError {}

/** The snapshot's source entries being assembled, the run's findings and the report's summaries. */
interface Assembly {
  findings: Finding[];
  sources: SourceSnapshot[];
  summaries: SourceSummary[];
}

/**
 * Commits a run: assembles every part's outcome into one snapshot — complete on its own: a source that could
 * not be read is carried over from its previous entry — and writes it to every target that has all the
 * run's data.
 */
export async function commitBackup(
  config: Config,
  plan: BackupPlan,
  outcomes: PartOutcome[],
  session: Session,
  logger: Logger,
  signal?: AbortSignal,
): Promise<BackupResult> {
  // 1. Assemble the snapshot: each source as read now, or carried over.
  const a: Assembly = { findings: [...plan.failed, ...(plan.damaged ?? [])], sources: [], summaries: [] };
  const behind = new Map<string, string>(Object.entries(plan.behind));
  for (const o of outcomes) {
    a.findings.push(...o.findings);
    for (const [t, e] of Object.entries(o.behind)) behind.set(t, e);
  }
  for (const { name } of plan.sources.filter((x) => x.kind === 'couchdb'))
    assembleCouchSource(config, plan, outcomes, name, a);
  for (const { name } of plan.sources.filter((x) => x.kind === 'tarballs'))
    await assembleTarballSource(config, plan, outcomes, session, name, a);
  if (a.sources.length === 0)
    throw new SourceError(`no source could be read: ${a.findings.map((f) => f.message).join('; ')}`);

  // 2. Everything the snapshot refers to is stored (and indexed) on every target still in the run; then the
  // snapshot.
  await session.writer.flush();
  await refuseIfPruned(plan, outcomes, session);
  // The last moment to stop: an interruption (a grace period over) while the data was being stored leaves
  // no snapshot, so the run is handed back whole.
  if (signal?.aborted)
    throw new InterruptedError(
      'backup interrupted before its snapshot was written; nothing of this run was committed, ' +
        'earlier snapshots are intact',
    );
  for (const [t, e] of session.fanout.failed) behind.set(t, e.message);
  for (const t of behind.keys())
    if (!session.fanout.failed.has(t)) session.fanout.fail(t, new Error(behind.get(t)!));
  const stats = runStats(plan, outcomes, session);
  const manifest = newManifest(session.repo, a.sources, {
    ...(plan.parent ? { parent: plan.parent } : {}),
    stats: { ...(stats as Record<string, number>), ...runRequests(outcomes, session) },
  });
  const sealed = await sealSnapshot(session.repo, manifest);
  await session.fanout.put(sealed.key, sealed.bytes);
  for (const [t, e] of session.fanout.failed) behind.set(t, e.message);

  // 3. Report.
  const targets = targetReports(config, plan, session, behind);
  const exitCode = runExitCode(targets, a.findings);
  logger.info({ snapshot: sealed.id, partial: exitCode !== ExitCode.ok }, 'snapshot committed');
  return {
    runId: plan.runId,
    snapshot: { id: sealed.id, time: manifest.time, key: sealed.key },
    targets,
    sources: a.summaries,
    findings: a.findings,
    stats,
    exitCode,
  };
}

/**
 * A source that could not be read this run: its finding, and its entry of the previous snapshot carried over
 * (pointing at the snapshot its data was last read in), if it has one.
 */
function carryOver(a: Assembly, plan: BackupPlan, name: string, kind: string, why: string): void {
  a.findings.push({ severity: 'error', code: 'source-failed', source: name, message: why });
  const prev = plan.previous[name];
  if (!prev) return;
  // The snapshot the data was last read in (a source down for several runs keeps pointing at it).
  const from = (prev.entry.carriedFrom as string | undefined) ?? prev.snapshot;
  a.sources.push({ ...prev.entry, carriedFrom: from });
  const e = prev.entry as { databases?: DbSnapshot[]; files?: number; bytes?: number };
  a.summaries.push({
    name,
    kind,
    carriedFrom: from,
    databases: e.databases?.map(dbSummary),
    files: e.files,
    bytes: e.bytes,
  });
}

/** A CouchDB source: its databases as backed up by the parts, or carried over when it could not be read. */
function assembleCouchSource(
  config: Config,
  plan: BackupPlan,
  outcomes: PartOutcome[],
  name: string,
  a: Assembly,
): void {
  const { findings } = a;
  const src = config.sources.couchdb.find((c) => c.name === name);
  if (!src) throw new SourceError(`no CouchDB source named ${name} in the configuration`);
  const parts = outcomes.filter((o) => o.part.kind === 'couchdb' && o.part.source === src.name);
  const listingFailure = plan.failed.find((f) => f.source === src.name);
  if (listingFailure) {
    findings.splice(findings.indexOf(listingFailure), 1);
    return carryOver(a, plan, src.name, 'couchdb', listingFailure.message);
  }
  const fatal = parts.find((o) => o.sourceError) ?? unreadSource(src.name, parts);
  if (fatal) {
    // One finding for the source, not one per database.
    for (const f of findings.filter((x) => x.source === src.name && x.code === 'db-failed'))
      findings.splice(findings.indexOf(f), 1);
    return carryOver(a, plan, src.name, 'couchdb', fatal.sourceError!);
  }
  const databases = parts.map((o) => o.db).filter((d): d is DbSnapshot => Boolean(d));
  const prev = plan.previous[src.name]?.entry as CouchSourceSnapshot | undefined;
  for (const old of prev?.databases ?? []) {
    if (!parts.some((o) => o.part.kind === 'couchdb' && o.part.db === old.name)) {
      findings.push({
        severity: 'warning',
        code: 'db-removed',
        source: src.name,
        object: old.name,
        message:
          `database ${old.name} was in the previous snapshot and is not backed up now ` +
          '(deleted, or no longer selected)',
      });
    }
  }
  const url = new URL(src.url);
  url.username = '';
  url.password = '';
  a.sources.push({
    kind: 'couchdb',
    name: src.name,
    url: url.toString().replace(/\/+$/, ''),
    databases,
  } satisfies CouchSourceSnapshot);
  a.summaries.push({ name: src.name, kind: 'couchdb', databases: databases.map(dbSummary) });
}

/** A tarball source: its shards' listings joined into one, or carried over when it could not be read. */
async function assembleTarballSource(
  config: Config,
  plan: BackupPlan,
  outcomes: PartOutcome[],
  session: Session,
  name: string,
  a: Assembly,
): Promise<void> {
  const src = config.sources.tarballs.find((c) => c.name === name);
  if (!src) throw new SourceError(`no tarball source named ${name} in the configuration`);
  const parts = outcomes
    .filter((o) => o.part.kind === 'tarballs' && o.part.source === src.name)
    .sort((x, y) => (x.part as { index: number }).index - (y.part as { index: number }).index);
  if (parts.length === 0) return;
  const fatal = parts.find((o) => o.sourceError);
  if (fatal) return carryOver(a, plan, src.name, 'tarballs', fatal.sourceError!);
  const shards = parts.map((o) => o.tarballs!);
  const listing = await joinedListing(session, shards);
  const sum = (k: 'files' | 'bytes' | 'missing' | 'mismatches') =>
    shards.reduce((n, s) => n + ((s[k] as number | undefined) ?? 0), 0);
  a.sources.push({
    kind: 'tarballs',
    name: src.name,
    location: shards[0]!.location,
    files: sum('files'),
    bytes: sum('bytes'),
    missing: sum('missing'),
    mismatches: sum('mismatches'),
    listing,
  } satisfies TarballSourceSnapshot);
  a.summaries.push({ name: src.name, kind: 'tarballs', files: sum('files'), bytes: sum('bytes') });
}

/** Consecutive shards' listings, concatenated, are the store's listing: chunk lists joined as they are. */
async function joinedListing(session: Session, shards: TarballSourceSnapshot[]): Promise<StreamRef> {
  if (shards.length === 1) return shards[0]!.listing;
  const ids: Buffer[] = [];
  let size = 0;
  for (const s of shards) {
    for await (const id of chunkIds(session.reader, s.listing)) ids.push(Buffer.from(id));
    size += s.listing.size;
  }
  return refFromChunks(session.writer, { size, ids });
}

/**
 * A prune that deleted, after this run started, a pack the run deduplicated against (the run was longer
 * than the prune grace period): committing would refer to missing data. Refuse; the next run redoes it.
 */
async function refuseIfPruned(plan: BackupPlan, outcomes: PartOutcome[], session: Session): Promise<void> {
  const gone = deletedSince(await loadMarks(session.repo, session.repo.targets[0]!), new Date(plan.started));
  const used = new Set([...outcomes.flatMap((o) => o.usedPacks), ...session.writer.usedPacks]);
  const lost = [...used].filter((p) => gone.has(p));
  if (lost.length) {
    throw new PrunedDuringRunError(
      `a prune deleted ${lost.length} pack(s) this run relied on (pack ${lost[0]}) while it ran ` +
        '(the run took longer than the prune grace period); nothing was committed — run the backup again',
    );
  }
}

/**
 * The writer statistics of the run. Parts done by other processes flushed their own writers; this session's
 * writer (every part of an in-process run, and the commit's own writes) is counted whole, its final flush
 * included.
 */
function runStats(
  plan: BackupPlan,
  outcomes: PartOutcome[],
  session: Session,
): Partial<WriterStats> & { durationMs: number } {
  const stats: Partial<WriterStats> & { durationMs: number } = {
    durationMs: Date.now() - Date.parse(plan.started),
  };
  const add = (from: Partial<WriterStats>) => {
    for (const [k, v] of Object.entries(from) as [keyof WriterStats, number][])
      stats[k] = (stats[k] ?? 0) + v;
  };
  for (const o of outcomes) if (o.sessionId !== session.id) add(o.stats);
  add(session.writer.stats);
  return stats;
}

/**
 * Requests of the run: the parts' (made in their sessions) plus this session's beyond them (commit, and
 * in-process runs whose parts shared this session are counted by their deltas already).
 */
function runRequests(outcomes: PartOutcome[], session: Session): Record<string, number> {
  const requests: Record<string, number> = {};
  for (const o of outcomes)
    for (const [k, v] of Object.entries(o.requests)) requests[k] = (requests[k] ?? 0) + v;
  const sessionTotal = requestCounts(session);
  const inSession = outcomes.filter((o) => o.sessionId === session.id);
  for (const [k, v] of Object.entries(sessionTotal)) {
    const counted = inSession.reduce((n, o) => n + (o.requests[k] ?? 0), 0);
    requests[k] = (requests[k] ?? 0) + Math.max(0, v - counted);
  }
  return requests;
}

/** Each configured target: ok, or behind (failed in this run, or not in it), and what was written to it. */
function targetReports(
  config: Config,
  plan: BackupPlan,
  session: Session,
  behind: Map<string, string>,
): TargetReport[] {
  return config.targets.map((t) => ({
    name: t.name,
    status: behind.has(t.name) || !(plan.targets.includes(t.name) || t.name in plan.behind) ? 'behind' : 'ok',
    ...(behind.has(t.name) ? { error: behind.get(t.name) } : {}),
    bytesWritten: (session.fanout.written.get(t.name) ?? 0) + (plan.caughtUp[t.name]?.bytes ?? 0),
    ...(plan.caughtUp[t.name] ? { caughtUp: plan.caughtUp[t.name] } : {}),
  }));
}

/**
 * A CouchDB source none of whose databases could be read (the server unreachable with the databases named
 * in the configuration: every database failed the same way) is a source that could not be read, as when
 * its list of databases cannot be had.
 */
function unreadSource(source: string, parts: PartOutcome[]): { sourceError: string } | undefined {
  // Any database read, or gone (the server answered 404 for it): the source answered.
  if (parts.length === 0 || parts.some((o) => !o.dbError)) return undefined;
  return { sourceError: `no database of ${source} could be read (${parts.length}): ${parts[0]!.dbError!}` };
}

/**
 * The exit status of a committed run: 3 when a source could not be read (it is carried over from the snapshot
 * it was last read in, or absent when it never was) — even though the others were committed; else 6 when
 * anything else was left behind (a target, a database, a file); else 0.
 */
function runExitCode(targets: TargetReport[], findings: Finding[]): ExitCode {
  if (findings.some((f) => f.code === 'source-failed')) return ExitCode.source;
  const partial = targets.some((t) => t.status !== 'ok') || findings.some((f) => f.severity === 'error');
  return partial ? ExitCode.partial : ExitCode.ok;
}
