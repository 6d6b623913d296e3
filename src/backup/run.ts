import { mkdtemp, rm } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Config, CouchdbSourceConfig, TarballSourceConfig } from '../config/schema.js';
import { ExitCode, InterruptedError, messageOf, RegbackupError, SourceError, TargetError } from '../errors.js';
import { log as rootLog, type Logger } from '../log.js';
import { Fanout } from '../repo/fanout.js';
import { loadWorkerKey } from '../repo/keys.js';
import { BlobReader } from '../repo/reader.js';
import { defaultCacheRoot, Repository } from '../repo/repository.js';
import { listSnapshots, loadSnapshot, newManifest, sealSnapshot, type SnapshotManifest, type SourceSnapshot } from '../repo/snapshot.js';
import type { StreamRef } from '../repo/stream-ref.js';
import { catchUp } from '../repo/sync.js';
import { BlobWriter, type WriterStats } from '../repo/writer.js';
import { openStore } from '../store/index.js';
import type { ObjectStore } from '../store/types.js';
import { backupCouchSource } from '../sources/couchdb/index.js';
import { backupTarballSource } from '../sources/tarballs/source.js';
import { Progress } from './progress.js';
import type { BackupContext, CouchSourceSnapshot, DbSnapshot, Finding, TarballSourceSnapshot } from './types.js';

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
}

export interface TargetReport {
  name: string;
  status: 'ok' | 'behind';
  error?: string;
  /** Bytes written to it by this run (packs, index objects, snapshot, catch-up copies). */
  bytesWritten: number;
  caughtUp?: { objects: number; bytes: number };
}

export interface BackupResult {
  snapshot?: { id: string; time: string; key: string };
  targets: TargetReport[];
  sources: SourceSummary[];
  findings: Finding[];
  stats: WriterStats & { durationMs: number };
  exitCode: ExitCode;
}

export interface SourceSummary {
  name: string;
  kind: string;
  /** Carried over unchanged from an earlier snapshot because it could not be read this time. */
  carriedFrom?: string;
  databases?: Pick<DbSnapshot, 'name' | 'seq' | 'mode' | 'fullReason' | 'docCount' | 'deletedCount' | 'conflictCount' | 'attachmentCount'>[];
  files?: number;
  bytes?: number;
}

/** Finds, for each source name, its entry in the newest snapshot that has it (reading few manifests). */
async function previousEntries(repo: Repository, store: ObjectStore, names: string[]): Promise<{ id?: string; bySource: Map<string, SourceSnapshot & { snapshot: string }> }> {
  const list = await listSnapshots(store);
  const bySource = new Map<string, SourceSnapshot & { snapshot: string }>();
  const latest = list[list.length - 1]?.id;
  for (let i = list.length - 1; i >= 0 && i >= list.length - 50; i--) {
    if (names.every((n) => bySource.has(n))) break;
    let m: SnapshotManifest;
    try {
      m = await loadSnapshot(repo, store, list[i]!);
    } catch (err) {
      rootLog().warn({ snapshot: list[i]!.id, err: messageOf(err) }, 'an earlier snapshot cannot be read; skipping it for incremental state');
      continue;
    }
    for (const s of m.sources) if (!bySource.has(s.name)) bySource.set(s.name, { ...s, snapshot: list[i]!.id });
  }
  return { id: latest, bySource };
}

/**
 * One backup run: one snapshot of the configured sources, written to every target in one pass.
 *
 * Order: catch up targets that missed earlier runs; back up each CouchDB database; flush; back up the tarball
 * stores (after the packuments, so that every tarball a backed-up packument names should be present); flush;
 * write the snapshot. A source that cannot be read is carried over from the previous snapshot and reported;
 * a target that fails is left behind and reported; either makes the run partial (exit status 6).
 */
export async function runBackup(config: Config, opts: BackupOptions = {}): Promise<BackupResult> {
  const started = Date.now();
  const logger = opts.logger ?? rootLog();
  const signal = opts.signal ?? new AbortController().signal;
  const progress = opts.progress ?? new Progress();
  const findings: Finding[] = [];
  const wanted = (name: string) => !opts.sources?.length || opts.sources.includes(name);
  const couchSources = config.sources.couchdb.filter((s) => wanted(s.name));
  const tarballSources = config.sources.tarballs.filter((s) => wanted(s.name));
  for (const n of opts.sources ?? []) {
    if (![...config.sources.couchdb, ...config.sources.tarballs].some((s) => s.name === n)) {
      throw new SourceError(`no source named ${n} in the configuration`);
    }
  }
  if (couchSources.length + tarballSources.length === 0) throw new SourceError('no source to back up (the configuration lists none)');

  const worker = await loadWorkerKey(config.keys);
  const stores = opts.stores ?? config.targets.map((t) => openStore(t));
  const { repo, unreachable } = await Repository.open(stores, { worker }, { cacheRoot: config.cache ?? defaultCacheRoot() });
  const behind = new Map<string, Error>(unreachable.map((u) => [u.target, u.error]));
  for (const u of unreachable) logger.error({ target: u.target, err: u.error.message }, `target ${u.target} cannot be read; it is left behind this run`);

  mkdirSync(repo.cacheDir, { recursive: true });
  const tmpDir = await mkdtemp(path.join(repo.cacheDir, 'tmp-'));
  let writer: BlobWriter | undefined;
  try {
    // 1. Catch up targets that missed earlier runs (copies ciphertext between targets; no source is read).
    progress.phase = 'sync';
    const index0 = await repo.loadIndex(repo.targets[0]);
    const sync = await catchUp(repo.targets, { packHash: (id) => index0.packById(id)?.sha256 });
    for (const [t, e] of sync.failed) behind.set(t, e);
    const live = repo.targets.filter((t) => !behind.has(t.name));
    if (live.length === 0) throw new TargetError(`no target can be written (${[...behind].map(([n, e]) => `${n}: ${e.message}`).join('; ')})`);
    const index = await repo.loadIndex(live[0]);
    const fanout = new Fanout(live);
    writer = new BlobWriter(repo, index, fanout, { workers: opts.workers });
    const reader = new BlobReader(repo, index, live);
    const prev = await previousEntries(repo, live[0]!, [...couchSources, ...tarballSources].map((s) => s.name));

    const ctx = (previous?: SourceSnapshot): BackupContext => ({ writer: writer!, reader, previous, progress, log: logger, tmpDir, signal });
    const sources: SourceSnapshot[] = [];
    const summaries: SourceSummary[] = [];
    const expectations: StreamRef[] = [];
    const checkAbort = () => {
      if (signal.aborted) throw new InterruptedError('backup interrupted; nothing of this run was committed, earlier snapshots are intact');
    };

    // 2. CouchDB, database by database.
    for (const src of couchSources) {
      checkAbort();
      progress.phase = src.name;
      const before = prev.bySource.get(src.name) as (CouchSourceSnapshot & { snapshot: string }) | undefined;
      const snap = await backupCouch(src, before, ctx, findings, expectations);
      if (snap) {
        sources.push(snap.snapshot);
        summaries.push(snap.summary);
      }
    }
    // The tarball parts read the expectations written above: make them readable.
    if (expectations.length) await writer.flush();

    // 3. Tarball stores.
    for (const src of tarballSources) {
      checkAbort();
      progress.phase = src.name;
      const before = prev.bySource.get(src.name) as (TarballSourceSnapshot & { snapshot: string }) | undefined;
      try {
        const r = await backupTarballSource(src, ctx(before), expectations);
        findings.push(...r.findings);
        sources.push(r.snapshot);
        summaries.push({ name: src.name, kind: 'tarballs', files: r.snapshot.files, bytes: r.snapshot.bytes });
      } catch (err) {
        if (!(err instanceof SourceError)) throw err;
        findings.push({ severity: 'error', code: 'source-failed', source: src.name, message: err.message });
        if (before) {
          const { snapshot, ...carried } = before;
          sources.push({ ...carried, carriedFrom: snapshot });
          summaries.push({ name: src.name, kind: 'tarballs', carriedFrom: snapshot, files: before.files, bytes: before.bytes });
        }
      }
    }
    if (sources.length === 0) throw new SourceError(`no source could be read: ${findings.map((f) => f.message).join('; ')}`);

    // 4. Everything stored, then the snapshot that refers to it.
    checkAbort();
    progress.phase = 'commit';
    await writer.flush();
    const manifest = newManifest(repo, sources, {
      parent: prev.id,
      stats: { ...writer.stats, durationMs: Date.now() - started },
    });
    const sealed = await sealSnapshot(repo, manifest);
    await fanout.put(sealed.key, sealed.bytes);
    for (const [t, e] of fanout.failed) behind.set(t, e);

    const targets: TargetReport[] = repo.targets.map((t) => ({
      name: t.name,
      status: behind.has(t.name) ? 'behind' : 'ok',
      error: behind.get(t.name)?.message,
      bytesWritten: (fanout.written.get(t.name) ?? 0) + (sync.copied.get(t.name)?.bytes ?? 0),
      caughtUp: sync.copied.get(t.name)?.objects ? sync.copied.get(t.name) : undefined,
    }));
    for (const u of stores.filter((s) => !repo.targets.includes(s))) {
      targets.push({ name: u.name, status: 'behind', error: behind.get(u.name)?.message, bytesWritten: 0 });
    }
    const partial = targets.some((t) => t.status !== 'ok') || findings.some((f) => f.severity === 'error');
    return {
      snapshot: { id: sealed.id, time: manifest.time, key: sealed.key },
      targets,
      sources: summaries,
      findings,
      stats: { ...writer.stats, durationMs: Date.now() - started },
      exitCode: partial ? ExitCode.partial : ExitCode.ok,
    };
  } finally {
    progress.stop();
    await writer?.close();
    repo.close();
    await rm(tmpDir, { recursive: true, force: true });
  }
}

async function backupCouch(
  src: CouchdbSourceConfig,
  before: (CouchSourceSnapshot & { snapshot: string }) | undefined,
  ctx: (previous?: SourceSnapshot) => BackupContext,
  findings: Finding[],
  expectations: StreamRef[],
): Promise<{ snapshot: CouchSourceSnapshot; summary: SourceSummary } | undefined> {
  let previous: CouchSourceSnapshot | undefined;
  if (before) {
    const { snapshot: _id, ...rest } = before;
    previous = rest as CouchSourceSnapshot;
  }
  try {
    const r = await backupCouchSource(src, ctx(previous));
    findings.push(...r.findings);
    if (r.expectations) expectations.push(r.expectations);
    return { snapshot: r.snapshot, summary: { name: src.name, kind: 'couchdb', databases: r.snapshot.databases.map(dbSummary) } };
  } catch (err) {
    if (!(err instanceof RegbackupError) || err instanceof InterruptedError) throw err;
    // The whole source could not be read (unreachable, credentials refused): keep its previous entry, so that
    // the snapshot stays complete, and say so.
    findings.push({ severity: 'error', code: 'source-failed', source: src.name, message: err.message });
    if (!before) return undefined;
    return {
      snapshot: { ...previous!, carriedFrom: before.snapshot } as CouchSourceSnapshot,
      summary: { name: src.name, kind: 'couchdb', carriedFrom: before.snapshot, databases: before.databases.map(dbSummary) },
    };
  }
}

function dbSummary(d: DbSnapshot): NonNullable<SourceSummary['databases']>[number] {
  return { name: d.name, seq: d.seq, mode: d.mode, fullReason: d.fullReason, docCount: d.docCount, deletedCount: d.deletedCount, conflictCount: d.conflictCount, attachmentCount: d.attachmentCount };
}

export function redactUrl(u: string): string {
  try {
    const url = new URL(u);
    url.username = '';
    url.password = '';
    return url.toString();
  } catch {
    return '(invalid URL)';
  }
}
