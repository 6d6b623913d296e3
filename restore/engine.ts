import os from 'node:os';
import path from 'node:path';
import { Progress } from '../src/util/progress.js';
import type { CouchSourceSnapshot, TarballSourceSnapshot } from '../src/repo/format/source-snapshots.js';
import { DestinationError, ExitCode, InterruptedError, UsageError } from '../src/errors.js';
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
  type TarballPlan,
} from './tarballs.js';
import type { DbReport, RestoreReport, TarballReport } from './types.js';

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
  /** Only these databases (`name` or `source/name`); the tarball store is then left out unless `packages` is given. */
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
   * Worker threads that read, decrypt, verify and write tarballs when the first target is a local directory and
   * the destination a directory (default: the cores, at most 4; 0: everything on this thread).
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
 * Restores a snapshot into a destination: plans every part first (reads listings, validates every name, looks
 * at the destination: a non-empty database or store is refused before anything is written, unless `force`),
 * then writes the CouchDB databases and the tarball store, verifying each against the snapshot, and returns
 * the full report. Resumable: a journal in the cache records what is done.
 */
export async function restoreSnapshot(o: RestoreOptions): Promise<RestoreReport> {
  const t0 = Date.now();
  const progress = o.progress ?? new Progress();
  const parallel = Math.max(1, o.parallel ?? 8);
  const couch = o.couchdb
    ? new CouchDestination(o.couchdb.url, { concurrency: parallel, signal: o.signal })
    : undefined;
  const destination = describe(o, couch);
  const journalDir = path.join(o.repo.cacheDir, 'restore');
  // One journal per destination and selection: a restore of one package does not resume a full one.
  const sel = o.only ?? {};
  const journalKey = `${destination}${sel.sources?.length || sel.dbs?.length || sel.packages?.length ? ` ${JSON.stringify([sel.sources ?? [], sel.dbs ?? [], sel.packages ?? []])}` : ''}`;

  // The journal: resume what an interrupted restore of the same snapshot into the same destination began.
  let journal: Journal | undefined;
  let found = o.resume === false ? undefined : Journal.find(journalDir, journalKey);
  if (found && found.snapshot !== o.snapshot.id) {
    if (!o.force) {
      throw new UsageError(
        `an interrupted restore of snapshot ${found.snapshot.slice(0, 12)} into ${destination} was found (started ${found.started}, last progress ${found.updated}): run the restore again with --snapshot ${found.snapshot.slice(0, 12)} to finish it, or pass --force to start over with snapshot ${o.snapshot.id.slice(0, 12)}`,
      );
    }
    found = undefined;
  }
  if (!o.dryRun) journal = Journal.open(journalDir, journalKey, o.snapshot.id, found);

  const index = await o.repo.loadIndex(o.metaStore);
  log().debug({ ms: Date.now() - t0, packs: index.packCount }, 'restore: index loaded');
  const stores = [o.metaStore, ...o.repo.targets.filter((t) => t !== o.metaStore)];
  const treeReader = new BlobReader(o.repo, index, stores);
  const fetcher = new BlobFetcher(o.repo, index, stores, treeReader, {
    concurrency: Math.max(4, Math.min(16, parallel)),
  });
  const onAbort = () => journal?.flush(true);
  o.signal?.addEventListener('abort', onAbort);
  try {
    const { dbJobs, tarballJobs, notes } = selectJobs(o);
    for (const n of notes) log().info(n);
    if (dbJobs.length && !couch)
      throw new UsageError('the selection names databases, but no CouchDB destination was given');

    // 1. Plan everything (read only): refusals come before any write.
    progress.phase = 'plan';
    const cctx: CouchContext | undefined = couch
      ? {
          dest: couch,
          fetcher,
          treeReader,
          journal: journal ?? readOnlyJournal(journalDir, journalKey, found),
          progress,
          parallel,
          force: Boolean(o.force),
          attachments: o.couchdb?.attachments,
          batchBytes: o.couchdb?.batchBytes,
          signal: o.signal,
        }
      : undefined;
    const tctx: TarballContext = {
      fetcher,
      treeReader,
      journal: journal ?? readOnlyJournal(journalDir, journalKey, found),
      progress,
      parallel,
      force: Boolean(o.force),
      workers: o.workers ?? Math.min(4, os.availableParallelism()),
      signal: o.signal,
    };
    const dbPlans: DbPlan[] = [];
    for (const j of dbJobs) {
      const plan = await planDatabase(cctx!, j);
      // --package: databases without any of the packages are left alone (not even created).
      if (!j.packages || plan.entries?.length) dbPlans.push(plan);
    }
    const tbPlans: TarballPlan[] = [];
    for (const j of tarballJobs) tbPlans.push(await planTarballs(tctx, j, o.tarballs!));
    const packages = o.only?.packages?.map((name) => ({
      name,
      docs: dbPlans.flatMap((p) =>
        (p.entries ?? []).filter((e) => e.id === name).map(() => `${p.job.dest}/${name}`),
      ),
      files: 0,
    }));
    if (packages) {
      for (const p of packages) p.files = tbPlans.reduce((n, t) => n + (t.perPackage?.get(p.name) ?? 0), 0);
      const missing = packages.filter((p) => !p.docs.length);
      if (missing.length) {
        throw new UsageError(
          `not in snapshot ${o.snapshot.id.slice(0, 12)}: ${missing.map((p) => `package ${p.name} (no document in ${dbJobs.map((j) => j.db.name).join(', ') || 'any database'})`).join('; ')}`,
        );
      }
    }
    const refusals = [
      ...dbPlans.flatMap((p) => (p.refusal ? [p.refusal] : [])),
      ...tbPlans.flatMap((p) => (p.refusal ? [p.refusal] : [])),
    ];

    let databases: DbReport[];
    let tarballs: TarballReport[];
    if (o.dryRun) {
      databases = dbPlans.map(plannedReport);
      tarballs = tbPlans.map(plannedTarballReport);
    } else {
      if (refusals.length) throw new DestinationError(`nothing was written: ${refusals.join('; ')}`);
      log().debug({ ms: Date.now() - t0 }, 'restore: planned');
      // 2. Write and verify, database by database, then the tarball store.
      databases = [];
      for (const p of dbPlans) {
        checkAbort(o.signal);
        databases.push(await restoreDatabase(cctx!, p));
        log().debug({ ms: Date.now() - t0, db: p.job.dest }, 'restore: database written and verified');
      }
      tarballs = [];
      for (const p of tbPlans) {
        checkAbort(o.signal);
        tarballs.push(await restoreTarballs(tctx, p));
        log().debug({ ms: Date.now() - t0, source: p.job.source.name }, 'restore: tarball store written');
      }
    }

    const durationMs = Date.now() - t0;
    const bytes = databases.reduce((n, d) => n + d.bytes, 0) + tarballs.reduce((n, t) => n + t.bytes, 0);
    const failed =
      databases.some((d) => d.status === 'failed') || tarballs.some((t) => t.status === 'failed');
    const refused =
      databases.some((d) => d.failureCount > 0) ||
      tarballs.some((t) => t.failures.some((f) => /destination|symbolic link|object key/i.test(f.message)));
    const verified = !o.dryRun && !failed;
    const exitCode = o.dryRun
      ? refusals.length
        ? ExitCode.destination
        : ExitCode.ok
      : verified
        ? ExitCode.ok
        : refused
          ? ExitCode.destination
          : ExitCode.integrity;
    if (verified) journal?.remove();
    else journal?.flush(true);
    return {
      snapshot: { id: o.snapshot.id, time: o.manifest.time, host: o.manifest.host },
      destination,
      dryRun: Boolean(o.dryRun),
      resumed: Boolean(
        found && [...Object.values(found.dbs), ...Object.values(found.tarballs)].some((p) => p.started),
      ),
      targets: {
        used: stores.map((s) => s.name),
        metadata: o.metaStore.name,
        unreachable: o.unreachable ?? [],
        fallbacks: [...treeReader.fallbacks, ...fetcher.fallbacks].slice(0, 1000),
        fallbackCount: treeReader.fallbacks.length + fetcher.fallbackCount,
        metadataFallbacks: [...o.repo.fallbacks],
        unreadableIndex: [...o.repo.unreadableIndex].map(([object, reason]) => ({ object, reason })),
      },
      databases,
      tarballs,
      packages,
      totals: {
        docs: databases.reduce((n, d) => n + d.docs, 0),
        files: tarballs.reduce((n, t) => n + t.files, 0),
        bytes,
        durationMs,
        bytesPerSecond: durationMs > 0 ? Math.round((bytes * 1000) / durationMs) : 0,
      },
      verified,
      exitCode,
    };
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
    // Nothing written (refused, failed while planning): nothing to resume, and nothing to block another restore.
    if (journal && !journal.anyStarted()) journal.remove();
    journal?.flush(true);
    progress.stop();
    couch?.close();
    await fetcher.close();
  }
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

/** Which databases and tarball stores of the snapshot to restore, given the destination and the selection. */
function selectJobs(o: RestoreOptions): {
  dbJobs: DbJob[];
  tarballJobs: { source: TarballSourceSnapshot; packages?: string[] }[];
  notes: string[];
} {
  const only = o.only ?? {};
  const notes: string[] = [];
  const sources = o.manifest.sources.filter((s) => !only.sources?.length || only.sources.includes(s.name));
  for (const n of only.sources ?? []) {
    if (!o.manifest.sources.some((s) => s.name === n))
      throw new UsageError(
        `snapshot ${o.snapshot.id.slice(0, 12)} has no source ${n} (it has ${o.manifest.sources.map((s) => s.name).join(', ')})`,
      );
  }
  const dbJobs: DbJob[] = [];
  const packages = only.packages?.length ? new Set(only.packages) : undefined;
  const couchSources = sources.filter((s) => s.kind === 'couchdb') as CouchSourceSnapshot[];
  const wantedDb = (src: string, db: string) =>
    !only.dbs?.length || only.dbs.includes(db) || only.dbs.includes(`${src}/${db}`);
  for (const n of only.dbs ?? []) {
    if (!couchSources.some((s) => s.databases.some((d) => n === d.name || n === `${s.name}/${d.name}`))) {
      throw new UsageError(
        `snapshot ${o.snapshot.id.slice(0, 12)} has no database ${n} (it has ${couchSources.flatMap((s) => s.databases.map((d) => d.name)).join(', ') || 'none'})`,
      );
    }
  }
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
        `databases ${other} and ${j.source}/${j.db.name} would both be restored into ${j.dest}: select one with --db`,
      );
    seen.set(j.dest, `${j.source}/${j.db.name}`);
  }
  let tarballJobs: { source: TarballSourceSnapshot; packages?: string[] }[] = [];
  const tarballSources = sources.filter((s) => s.kind === 'tarballs') as TarballSourceSnapshot[];
  if (only.dbs?.length && !packages) {
    if (tarballSources.length) notes.push('--db: the tarball store is not restored');
  } else if (o.tarballs) {
    if (tarballSources.length > 1) {
      throw new UsageError(
        `the snapshot has several tarball stores (${tarballSources.map((s) => s.name).join(', ')}) and the destination one: select one with --source`,
      );
    }
    tarballJobs = tarballSources.map((source) => ({ source, packages: only.packages }));
  } else if (tarballSources.length) {
    if (packages)
      throw new UsageError(
        '--package restores the tarballs too: give a tarball destination (--tarballs, or a destination with `tarballs:`)',
      );
    notes.push('the tarball store of the snapshot is not restored: the destination has no tarball store');
  }
  if (!dbJobs.length && !tarballJobs.length)
    throw new UsageError(
      'nothing to restore: the selection and the destination leave nothing of the snapshot',
    );
  return { dbJobs, tarballJobs, notes };
}
