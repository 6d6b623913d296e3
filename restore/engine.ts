import os from 'node:os';
import path from 'node:path';
import { Progress } from '../src/util/progress.js';
import type { CouchSourceSnapshot, TarballSourceSnapshot } from '../src/repo/format/source-snapshots.js';
import { DestinationError, InterruptedError, UsageError } from '../src/errors.js';
import { log } from '../src/log.js';
import { BlobReader } from '../src/repo/reader.js';
import type { Repository } from '../src/repo/repository.js';
import type { SnapshotInfo, SnapshotManifest } from '../src/repo/snapshot.js';
import type { ObjectStore } from '../src/store/types.js';
import { CouchDestination } from './couch-http.js';
import type { AttachmentMode } from './couch-write.js';
import {
  planDatabase,
  plannedReport,
  restoreDatabase,
  type CouchContext,
  type DbJob,
  type DbPlan,
} from './couchdb.js';
import { BlobFetcher } from './fetch.js';
import { Journal } from './state.js';
import {
  describeTarballDestination,
  plannedTarballReport,
  planTarballs,
  restoreTarballs,
  type TarballContext,
  type TarballDestination,
  type TarballJob,
  type TarballPlan,
} from './tarballs.js';
import { failureKinds, restoreExitCode } from './failures.js';
import type { DbReport, RestoreFailureKind, RestoreReport, TarballReport } from './types.js';

export interface CouchDestinationOptions {
  /** The CouchDB server to write (credentials in the URL are sent as Basic auth and never printed). */
  url: string;
  /** The name to give each database (default: its name in the snapshot). Drills use scratch names. */
  dbName?: (db: string, source: string) => string;
  attachments?: AttachmentMode;
  /** Bytes of bodies per `_bulk_docs` request. */
  batchBytes?: number;
}

export interface RestoreSelection {
  /** Only these sources of the snapshot (by name). */
  sources?: string[];
  /**
   * Only these databases (`name` or `source/name`); the tarball store is then left out unless `packages` is
   * given.
   */
  dbs?: string[];
  /** Only these packages: their documents and their tarballs. */
  packages?: string[];
}

export interface RestoreOptions {
  repo: Repository;
  snapshot: SnapshotInfo;
  manifest: SnapshotManifest;
  /** The target the manifest was read from: the index is loaded from it. */
  metaStore: ObjectStore;
  couchdb?: CouchDestinationOptions;
  tarballs?: TarballDestination;
  only?: RestoreSelection;
  /** Requests / files in flight (default 8). */
  parallel?: number;
  /**
   * Worker threads that read, decrypt, verify and write tarballs when the first target is a local directory
   * and the destination a directory (default: the cores, at most 4; 0: everything on this thread).
   */
  workers?: number;
  force?: boolean;
  dryRun?: boolean;
  /** Continue an interrupted restore into the same destination (default true). */
  resume?: boolean;
  progress?: Progress;
  signal?: AbortSignal;
  /** Targets found unreachable when opening (for the report). */
  unreachable?: { target: string; error: string }[];
}

/** The destination as the journal and the report name it (no credentials). */
function describe(o: RestoreOptions, couch?: CouchDestination): string {
  const parts: string[] = [];
  if (couch) parts.push(`couchdb ${couch.baseUrl}`);
  if (o.tarballs) parts.push(`tarballs ${describeTarballDestination(o.tarballs)}`);
  return parts.join(', ') || '(none)';
}

/**
 * The key of a restore's journal: one per destination and selection, so that a restore of one package does
 * not resume a full one.
 */
export function journalKeyOf(destination: string, sel: RestoreSelection): string {
  if (!sel.sources?.length && !sel.dbs?.length && !sel.packages?.length) return destination;
  return `${destination} ${JSON.stringify([sel.sources ?? [], sel.dbs ?? [], sel.packages ?? []])}`;
}

/** What a restore holds open while it runs: the destination, the journal, the readers of the repository. */
interface RestoreRun {
  t0: number;
  progress: Progress;
  parallel: number;
  couch?: CouchDestination;
  destination: string;
  journalDir: string;
  journalKey: string;
  /** The interrupted restore this one resumes. */
  found?: ReturnType<typeof Journal.find>;
  /** Undefined for a dry run. */
  journal?: Journal;
  stores: ObjectStore[];
  treeReader: BlobReader;
  fetcher: BlobFetcher;
}

/** Every part planned (read only): what is to be written, and what the destination refuses. */
interface RestorePlan {
  dbJobs: DbJob[];
  cctx?: CouchContext;
  tctx: TarballContext;
  dbPlans: DbPlan[];
  tbPlans: TarballPlan[];
  packages?: NonNullable<RestoreReport['packages']>;
  refusals: string[];
}

/**
 * Restores a snapshot into a destination: plans every part first (reads listings, validates every name, looks
 * at the destination: a non-empty database or store is refused before anything is written, unless `force`),
 * then writes the CouchDB databases and the tarball store, verifying each against the snapshot, and returns
 * the full report. Resumable: a journal in the cache records what is done.
 */
export async function restoreSnapshot(o: RestoreOptions): Promise<RestoreReport> {
  const run = await openRun(o);
  const onAbort = () => run.journal?.flush(true);
  o.signal?.addEventListener('abort', onAbort);
  try {
    // 1. Plan everything (read only): refusals come before any write.
    const plan = await planRestore(o, run);
    // 2. Write and verify, database by database, then the tarball store (a dry run writes nothing).
    const parts = o.dryRun ? plannedParts(plan) : await writeParts(o, run, plan);
    // 3. Report; the exit code comes from the kinds of the failures.
    const report = reportOf(o, run, plan, parts);
    if (report.verified) run.journal?.remove();
    else run.journal?.flush(true);
    return report;
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
    await closeRun(run);
  }
}

/** Opens the destination and the journal (refusing to mix snapshots in one destination), loads the index. */
async function openRun(o: RestoreOptions): Promise<RestoreRun> {
  const t0 = Date.now();
  const progress = o.progress ?? new Progress();
  const parallel = Math.max(1, o.parallel ?? 8);
  const couch = o.couchdb
    ? new CouchDestination(o.couchdb.url, { concurrency: parallel, signal: o.signal })
    : undefined;
  const destination = describe(o, couch);
  const journalDir = path.join(o.repo.cacheDir, 'restore');
  const journalKey = journalKeyOf(destination, o.only ?? {});

  // The journal: resume what an interrupted restore of the same snapshot into the same destination began.
  let found = o.resume === false ? undefined : Journal.find(journalDir, journalKey);
  if (found && found.snapshot !== o.snapshot.id) {
    if (!o.force) throw new UsageError(otherSnapshotMessage(found, destination, o.snapshot.id));
    found = undefined;
  }
  const journal = o.dryRun ? undefined : Journal.open(journalDir, journalKey, o.snapshot.id, found);

  const index = await o.repo.loadIndex(o.metaStore);
  log().debug({ ms: Date.now() - t0, packs: index.packCount }, 'restore: index loaded');
  const stores = [o.metaStore, ...o.repo.targets.filter((t) => t !== o.metaStore)];
  const treeReader = new BlobReader(o.repo, index, stores);
  const fetcher = new BlobFetcher(o.repo, index, stores, treeReader, {
    concurrency: Math.max(4, Math.min(16, parallel)),
  });
  return {
    t0,
    progress,
    parallel,
    couch,
    destination,
    journalDir,
    journalKey,
    found,
    journal,
    stores,
    treeReader,
    fetcher,
  };
}

function otherSnapshotMessage(
  found: NonNullable<ReturnType<typeof Journal.find>>,
  destination: string,
  snapshot: string,
): string {
  const other = found.snapshot.slice(0, 12);
  return (
    `an interrupted restore of snapshot ${other} into ${destination} was found ` +
    `(started ${found.started}, last progress ${found.updated}): ` +
    `run the restore again with --snapshot ${other} to finish it, ` +
    `or pass --force to start over with snapshot ${snapshot.slice(0, 12)}`
  );
}

async function closeRun(run: RestoreRun): Promise<void> {
  const { journal } = run;
  // Nothing written (refused, failed while planning): nothing to resume, nothing to block another restore.
  if (journal && !journal.anyStarted()) journal.remove();
  journal?.flush(true);
  run.progress.stop();
  run.couch?.close();
  await run.fetcher.close();
}

/** Plans every selected part (read only), and finds the selected packages in the snapshot. */
async function planRestore(o: RestoreOptions, run: RestoreRun): Promise<RestorePlan> {
  const { dbJobs, tarballJobs, notes } = selectJobs(o);
  for (const n of notes) log().info(n);
  if (dbJobs.length && !run.couch)
    throw new UsageError('the selection names databases, but no CouchDB destination was given');

  run.progress.phase = 'plan';
  const { cctx, tctx } = contexts(o, run);
  const dbPlans: DbPlan[] = [];
  for (const j of dbJobs) {
    const plan = await planDatabase(cctx!, j);
    // --package: databases without any of the packages are left alone (not even created).
    if (!j.packages || plan.entries?.length) dbPlans.push(plan);
  }
  const tbPlans: TarballPlan[] = [];
  for (const j of tarballJobs) tbPlans.push(await planTarballs(tctx, j, o.tarballs!));
  const packages = selectedPackages(o, dbJobs, dbPlans, tbPlans);
  const refusals = [
    ...dbPlans.flatMap((p) => (p.refusal ? [p.refusal] : [])),
    ...tbPlans.flatMap((p) => (p.refusal ? [p.refusal] : [])),
  ];
  return { dbJobs, cctx, tctx, dbPlans, tbPlans, packages, refusals };
}

/** What the writers of the databases and of the tarball store share. */
function contexts(o: RestoreOptions, run: RestoreRun): { cctx?: CouchContext; tctx: TarballContext } {
  const journal = () => run.journal ?? readOnlyJournal(run.journalDir, run.journalKey, run.found);
  const common = {
    fetcher: run.fetcher,
    treeReader: run.treeReader,
    progress: run.progress,
    parallel: run.parallel,
    force: Boolean(o.force),
    signal: o.signal,
  };
  const cctx: CouchContext | undefined = run.couch
    ? {
        ...common,
        dest: run.couch,
        journal: journal(),
        attachments: o.couchdb?.attachments,
        batchBytes: o.couchdb?.batchBytes,
      }
    : undefined;
  const tctx: TarballContext = {
    ...common,
    journal: journal(),
    workers: o.workers ?? Math.min(4, os.availableParallelism()),
  };
  return { cctx, tctx };
}

/** --package: where each package was found in the snapshot; a package without a document is refused. */
function selectedPackages(
  o: RestoreOptions,
  dbJobs: DbJob[],
  dbPlans: DbPlan[],
  tbPlans: TarballPlan[],
): RestorePlan['packages'] {
  const packages = o.only?.packages?.map((name) => ({
    name,
    docs: dbPlans.flatMap((p) =>
      (p.entries ?? []).filter((e) => e.id === name).map(() => `${p.job.dest}/${name}`),
    ),
    files: tbPlans.reduce((n, t) => n + (t.perPackage?.get(name) ?? 0), 0),
  }));
  const missing = packages?.filter((p) => !p.docs.length) ?? [];
  if (missing.length) {
    const dbs = dbJobs.map((j) => j.db.name).join(', ') || 'any database';
    const what = missing.map((p) => `package ${p.name} (no document in ${dbs})`).join('; ');
    throw new UsageError(`not in snapshot ${o.snapshot.id.slice(0, 12)}: ${what}`);
  }
  return packages;
}

interface PartReports {
  databases: DbReport[];
  tarballs: TarballReport[];
}

/** A dry run: what each part would do. */
function plannedParts(plan: RestorePlan): PartReports {
  return { databases: plan.dbPlans.map(plannedReport), tarballs: plan.tbPlans.map(plannedTarballReport) };
}

/** Writes and verifies every part, unless the destination refused any of them (then nothing is written). */
async function writeParts(o: RestoreOptions, run: RestoreRun, plan: RestorePlan): Promise<PartReports> {
  if (plan.refusals.length) throw new DestinationError(`nothing was written: ${plan.refusals.join('; ')}`);
  log().debug({ ms: Date.now() - run.t0 }, 'restore: planned');
  const databases: DbReport[] = [];
  for (const p of plan.dbPlans) {
    checkAbort(o.signal);
    databases.push(await restoreDatabase(plan.cctx!, p));
    log().debug({ ms: Date.now() - run.t0, db: p.job.dest }, 'restore: database written and verified');
  }
  const tarballs: TarballReport[] = [];
  for (const p of plan.tbPlans) {
    checkAbort(o.signal);
    tarballs.push(await restoreTarballs(plan.tctx, p));
    log().debug({ ms: Date.now() - run.t0, source: p.job.source.name }, 'restore: tarball store written');
  }
  return { databases, tarballs };
}

/** The report of the restore, with its exit code from the kinds of its failures. */
function reportOf(o: RestoreOptions, run: RestoreRun, plan: RestorePlan, parts: PartReports): RestoreReport {
  const { databases, tarballs } = parts;
  const { treeReader, fetcher, found } = run;
  const durationMs = Date.now() - run.t0;
  const bytes = databases.reduce((n, d) => n + d.bytes, 0) + tarballs.reduce((n, t) => n + t.bytes, 0);
  const failed = databases.some((d) => d.status === 'failed') || tarballs.some((t) => t.status === 'failed');
  const kinds: RestoreFailureKind[] = o.dryRun
    ? plan.refusals.map(() => 'destination-refused')
    : failureKinds(databases, tarballs);
  return {
    snapshot: { id: o.snapshot.id, time: o.manifest.time, host: o.manifest.host },
    destination: run.destination,
    dryRun: Boolean(o.dryRun),
    resumed: Boolean(
      found && [...Object.values(found.dbs), ...Object.values(found.tarballs)].some((p) => p.started),
    ),
    targets: {
      used: run.stores.map((s) => s.name),
      metadata: o.metaStore.name,
      unreachable: o.unreachable ?? [],
      fallbacks: [...treeReader.fallbacks, ...fetcher.fallbacks].slice(0, 1000),
      fallbackCount: treeReader.fallbacks.length + fetcher.fallbackCount,
      metadataFallbacks: [...o.repo.fallbacks],
      unreadableIndex: [...o.repo.unreadableIndex].map(([object, reason]) => ({ object, reason })),
    },
    databases,
    tarballs,
    packages: plan.packages,
    totals: {
      docs: databases.reduce((n, d) => n + d.docs, 0),
      files: tarballs.reduce((n, t) => n + t.files, 0),
      bytes,
      durationMs,
      bytesPerSecond: durationMs > 0 ? Math.round((bytes * 1000) / durationMs) : 0,
    },
    verified: !o.dryRun && !failed,
    exitCode: restoreExitCode(kinds),
  };
}

function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted)
    throw new InterruptedError(
      'restore interrupted; run the same command again to continue where it stopped',
    );
}

function readOnlyJournal(dir: string, destination: string, found: ReturnType<typeof Journal.find>): Journal {
  return Journal.readOnly(dir, destination, found);
}

/** What `selectJobs` reads of the restore's options. */
export type JobSelection = Pick<RestoreOptions, 'only' | 'manifest' | 'snapshot' | 'couchdb' | 'tarballs'>;

/** Which databases and tarball stores of the snapshot to restore, given the destination and the selection. */
export function selectJobs(o: JobSelection): { dbJobs: DbJob[]; tarballJobs: TarballJob[]; notes: string[] } {
  const only = o.only ?? {};
  const notes: string[] = [];
  const snapshot = o.snapshot.id.slice(0, 12);
  for (const n of only.sources ?? []) {
    if (!o.manifest.sources.some((s) => s.name === n)) {
      const has = o.manifest.sources.map((s) => s.name).join(', ');
      throw new UsageError(`snapshot ${snapshot} has no source ${n} (it has ${has})`);
    }
  }
  const sources = o.manifest.sources.filter((s) => !only.sources?.length || only.sources.includes(s.name));
  const packages = only.packages?.length ? new Set(only.packages) : undefined;
  const couchSources = sources.filter((s) => s.kind === 'couchdb') as CouchSourceSnapshot[];
  const dbJobs = selectDbJobs(o, couchSources, packages, notes);
  const tarballSources = sources.filter((s) => s.kind === 'tarballs') as TarballSourceSnapshot[];
  const tarballJobs = selectTarballJobs(o, tarballSources, packages, notes);
  if (!dbJobs.length && !tarballJobs.length)
    throw new UsageError(
      'nothing to restore: the selection and the destination leave nothing of the snapshot',
    );
  return { dbJobs, tarballJobs, notes };
}

function selectDbJobs(
  o: JobSelection,
  couchSources: CouchSourceSnapshot[],
  packages: Set<string> | undefined,
  notes: string[],
): DbJob[] {
  const only = o.only ?? {};
  const wantedDb = (src: string, db: string) =>
    !only.dbs?.length || only.dbs.includes(db) || only.dbs.includes(`${src}/${db}`);
  for (const n of only.dbs ?? []) {
    if (!couchSources.some((s) => s.databases.some((d) => n === d.name || n === `${s.name}/${d.name}`))) {
      const has = couchSources.flatMap((s) => s.databases.map((d) => d.name)).join(', ') || 'none';
      throw new UsageError(`snapshot ${o.snapshot.id.slice(0, 12)} has no database ${n} (it has ${has})`);
    }
  }
  const dbJobs: DbJob[] = [];
  if (o.couchdb) {
    for (const s of couchSources) {
      for (const db of s.databases) {
        if (!wantedDb(s.name, db.name)) continue;
        dbJobs.push({ source: s.name, db, dest: o.couchdb.dbName?.(db.name, s.name) ?? db.name, packages });
      }
    }
  } else if (couchSources.length && (only.dbs?.length || packages)) {
    throw new UsageError(
      'the selection needs a CouchDB destination (--couchdb URL, or a destination with `couchdb:`)',
    );
  } else if (couchSources.length)
    notes.push('the CouchDB databases of the snapshot are not restored: the destination has no CouchDB');
  const seen = new Map<string, string>();
  for (const j of dbJobs) {
    const other = seen.get(j.dest);
    if (other)
      throw new UsageError(
        `databases ${other} and ${j.source}/${j.db.name} would both be restored into ${j.dest}: ` +
          'select one with --db',
      );
    seen.set(j.dest, `${j.source}/${j.db.name}`);
  }
  return dbJobs;
}

function selectTarballJobs(
  o: JobSelection,
  tarballSources: TarballSourceSnapshot[],
  packages: Set<string> | undefined,
  notes: string[],
): TarballJob[] {
  const only = o.only ?? {};
  if (only.dbs?.length && !packages) {
    if (tarballSources.length) notes.push('--db: the tarball store is not restored');
    return [];
  }
  if (o.tarballs) {
    if (tarballSources.length > 1) {
      throw new UsageError(
        `the snapshot has several tarball stores (${tarballSources.map((s) => s.name).join(', ')}) ` +
          'and the destination one: select one with --source',
      );
    }
    return tarballSources.map((source) => ({ source, packages: only.packages }));
  }
  if (tarballSources.length) {
    if (packages)
      throw new UsageError(
        '--package restores the tarballs too: give a tarball destination ' +
          '(--tarballs, or a destination with `tarballs:`)',
      );
    notes.push('the tarball store of the snapshot is not restored: the destination has no tarball store');
  }
  return [];
}
