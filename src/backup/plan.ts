import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { mkdtemp, opendir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Config, TarballSourceConfig } from '../config/schema.js';
import { retentionDaysOf } from '../config/load.js';
import { IntegrityError, RegbackupError, SourceError, TargetError } from '../errors.js';
import { log as rootLog, type Logger } from '../log.js';
import type { BlobIndex } from '../repo/blob-index.js';
import { Fanout } from '../repo/fanout.js';
import { loadWorkerKey } from '../repo/keys.js';
import { BlobReader } from '../repo/reader.js';
import { defaultCacheRoot, Repository } from '../repo/repository.js';
import {
  inTakenOrder,
  listSnapshots,
  loadOnce,
  loadSnapshot,
  newestVerified,
  type SnapshotInfo,
  type SnapshotManifest,
  type SourceSnapshot,
} from '../repo/snapshot.js';
import { catchUp } from '../repo/sync.js';
import { BlobWriter, type WriterOptions } from '../repo/writer.js';
import { openStore, StoreMetrics } from '../store/index.js';
import type { ObjectStore } from '../store/types.js';
import { listDatabases } from '../sources/couchdb/index.js';
import type { Shard } from '../sources/tarballs/walk.js';
import { compareCodePoints } from '../util/external-sort.js';
import type { Finding } from '../sources/types.js';
import { deletedKeys, excludedPacks, loadMarks } from '../maintenance/marks.js';

/**
 * A backup run, planned (docs: README "Scale-out"): the parts it is made of, so that one process or many
 * (BullMQ workers) can do them. Stage 1 is every CouchDB database; stage 2 the tarball stores (after the
 * packuments: they check tarballs against them), split into shards by top-level name; the commit writes the
 * snapshot once every part is done. A plan is plain JSON.
 */
export type BackupPart =
  | { kind: 'couchdb'; source: string; db: string }
  | { kind: 'tarballs'; source: string; shard?: Shard; index: number; count: number };

export interface BackupPlan {
  runId: string;
  started: string;
  /** The newest snapshot when the run started. */
  parent?: string;
  /** Per source name: its entry in the newest snapshot that has it, and that snapshot's ID. */
  previous: Record<string, { snapshot: string; entry: SourceSnapshot }>;
  /** Targets written by this run, and those left behind (with why). */
  targets: string[];
  behind: Record<string, string>;
  /** Objects copied to targets that had missed earlier runs. */
  caughtUp: Record<string, { objects: number; bytes: number }>;
  /** The sources of this run, in configuration order. */
  sources: { name: string; kind: 'couchdb' | 'tarballs' }[];
  stage1: BackupPart[];
  stage2: BackupPart[];
  /** Sources that could not even be listed (their previous entry is carried over at commit). */
  failed: Finding[];
  /**
   * Objects that do not verify on a target (forged or corrupt): not copied by the catch-up, and, for
   * snapshots, never taken as the parent. Reported as warnings of the run; `repair` replaces them.
   */
  damaged?: Finding[];
}

export interface PlanOptions {
  /** Only these sources (by name); default all. */
  sources?: string[];
  /** Shards per tarball store (directories only; default 1). */
  tarballShards?: number;
  logger?: Logger;
  /** The targets' stores (default: opened from the configuration). */
  stores?: ObjectStore[];
}

export function selectedSources(config: Config, names?: string[]) {
  for (const n of names ?? []) {
    if (![...config.sources.couchdb, ...config.sources.tarballs].some((s) => s.name === n)) {
      throw new SourceError(`no source named ${n} in the configuration`);
    }
  }
  const wanted = (name: string) => !names?.length || names.includes(name);
  const couch = config.sources.couchdb.filter((s) => wanted(s.name));
  const tarballs = config.sources.tarballs.filter((s) => wanted(s.name));
  if (couch.length + tarballs.length === 0)
    throw new SourceError('no source to back up (the configuration lists none)');
  return { couch, tarballs };
}

/** What a process needs to do parts of a run: the repository, its index, a writer to the run's targets. */
export interface Session {
  /** Random: tells the parts done in this session from those of other processes. */
  id: string;
  /** Request counters per target name. */
  metrics: Map<string, StoreMetrics>;
  repo: Repository;
  index: BlobIndex;
  fanout: Fanout;
  writer: BlobWriter;
  reader: BlobReader;
  tmpDir: string;
  close(): Promise<void>;
}

/** Opens the repository on `targets` (names) with the worker key, for a plan's parts or commit. */
export async function openSession(
  config: Config,
  targets: string[],
  opts: {
    workers?: number;
    stores?: ObjectStore[];
    beforeFileBatch?: WriterOptions['beforeFileBatch'];
    /** The run's signal: uploads (packs, index objects, the snapshot) stop when it aborts. */
    signal?: AbortSignal;
  } = {},
): Promise<Session> {
  const worker = await loadWorkerKey(config.keys);
  const metrics = new Map(config.targets.map((t) => [t.name, new StoreMetrics()]));
  const all = opts.stores ?? config.targets.map((t) => openStore(t, { metrics: metrics.get(t.name) }));
  const stores = all.filter((s) => targets.includes(s.name));
  if (stores.length === 0) throw new TargetError('no target to write to');
  // Repository.open throws when no target answers; one that stopped answering since the plan is left behind.
  const { repo, unreachable } = await Repository.open(
    stores,
    { worker },
    { cacheRoot: config.cache ?? defaultCacheRoot() },
  );
  const index = await repo.loadIndex(repo.targets[0]);
  const fanout = new Fanout(repo.targets, retentionDaysOf(config), opts.signal);
  for (const u of unreachable) fanout.fail(u.target, u.error);
  // Packs a prune has marked are not deduplicated against (marks.ts explains why this is safe).
  const exclude = excludedPacks(await loadMarks(repo, repo.targets[0]!));
  const writer = new BlobWriter(repo, index, fanout, {
    workers: opts.workers,
    exclude,
    beforeFileBatch: opts.beforeFileBatch,
  });
  const reader = new BlobReader(repo, index, repo.targets);
  mkdirSync(repo.cacheDir, { recursive: true });
  const tmpDir = await mkdtemp(path.join(repo.cacheDir, 'tmp-'));
  return {
    id: randomBytes(8).toString('hex'),
    metrics,
    repo,
    index,
    fanout,
    writer,
    reader,
    tmpDir,
    async close() {
      await writer.close();
      repo.close();
      await rm(tmpDir, { recursive: true, force: true });
    },
  };
}

/**
 * Plans a run: catches up targets that missed earlier runs, finds each source's previous entry, lists the
 * databases, and cuts the tarball stores into shards.
 */
export async function planBackup(config: Config, opts: PlanOptions = {}): Promise<BackupPlan> {
  const logger = opts.logger ?? rootLog();
  const { couch, tarballs } = selectedSources(config, opts.sources);
  const worker = await loadWorkerKey(config.keys);
  const stores = opts.stores ?? config.targets.map((t) => openStore(t));
  const { repo, unreachable } = await Repository.open(
    stores,
    { worker },
    { cacheRoot: config.cache ?? defaultCacheRoot() },
  );
  const behind: Record<string, string> = {};
  for (const u of unreachable) {
    behind[u.target] = u.error.message;
    logger.error(
      { target: u.target, err: u.error.message },
      `target ${u.target} cannot be read; it is left behind this run`,
    );
  }
  try {
    const index = await repo.loadIndex(repo.targets[0]);
    const sync = await catchUp(repo, {
      packHash: (id) => index.packById(id),
      // Read once the targets are listed: a deletion (prune, forget) under way then is already recorded.
      skip: async () => deletedKeys(await loadMarks(repo, repo.targets[0]!)),
      retentionDays: retentionDaysOf(config),
    });
    for (const [t, e] of sync.failed) behind[t] = e.message;
    const live = repo.targets.filter((t) => !(t.name in behind));
    if (live.length === 0)
      throw new TargetError(
        `no target can be written (${Object.entries(behind)
          .map(([n, e]) => `${n}: ${e}`)
          .join('; ')})`,
      );

    const previous = await previousEntries(
      repo,
      live,
      [...couch, ...tarballs].map((s) => s.name),
      logger,
    );
    // Each bad object once: a snapshot the catch-up refused is also passed over as parent; one finding.
    const damaged: Finding[] = [
      ...sync.skipped.map((b) => damageFinding(b.from, b.key, `${b.reason}; not copied to any other target`)),
      ...previous.skipped
        .filter((s) => !sync.skipped.some((b) => b.key === s.key))
        .map((s) =>
          damageFinding(s.targets.join(', '), s.key, `${s.reason}; not used as the parent of this run`),
        ),
    ];
    const failed: Finding[] = [];
    const stage1: BackupPart[] = [];
    for (const src of couch) {
      try {
        for (const db of await listDatabases(src)) stage1.push({ kind: 'couchdb', source: src.name, db });
      } catch (err) {
        if (!(err instanceof RegbackupError)) throw err;
        failed.push({ severity: 'error', code: 'source-failed', source: src.name, message: err.message });
      }
    }
    const stage2: BackupPart[] = [];
    for (const src of tarballs) {
      const shards = await planShards(src, opts.tarballShards ?? 1);
      shards.forEach((shard, index) =>
        stage2.push({
          kind: 'tarballs',
          source: src.name,
          ...(shard.from || shard.to ? { shard } : {}),
          index,
          count: shards.length,
        }),
      );
    }
    const caughtUp: BackupPlan['caughtUp'] = {};
    for (const [t, c] of sync.copied) if (c.objects) caughtUp[t] = c;
    return {
      runId: randomBytes(8).toString('hex'),
      started: new Date().toISOString(),
      parent: previous.latest,
      previous: previous.bySource,
      targets: live.map((t) => t.name),
      behind,
      caughtUp,
      sources: [
        ...couch.map((c) => ({ name: c.name, kind: 'couchdb' as const })),
        ...tarballs.map((t) => ({ name: t.name, kind: 'tarballs' as const })),
      ],
      stage1,
      stage2,
      failed,
      ...(damaged.length ? { damaged } : {}),
    };
  } finally {
    repo.close();
  }
}

function damageFinding(target: string, key: string, message: string): Finding {
  return { severity: 'warning', code: 'object-does-not-verify', source: target, object: key, message };
}

/**
 * The parent of the run — the newest snapshot that verifies on some target — and each source's entry in the
 * newest verifying snapshot that has it. Snapshots that verify nowhere are passed over, and returned.
 */
export async function previousEntries(
  repo: Repository,
  stores: readonly ObjectStore[],
  names: string[],
  logger: Logger,
): Promise<{
  latest?: string;
  bySource: BackupPlan['previous'];
  skipped: { key: string; targets: string[]; reason: string }[];
}> {
  const where = new Map<string, ObjectStore[]>();
  const list: SnapshotInfo[] = [];
  const unlisted: Error[] = [];
  for (const store of stores) {
    let infos: SnapshotInfo[];
    try {
      infos = await listSnapshots(store);
    } catch (err) {
      // This target is caught up (or left behind) by the run; the others still give the parent.
      if (!(err instanceof RegbackupError)) throw err;
      logger.warn(
        { target: store.name, err: err.message },
        `the snapshots of ${store.name} cannot be listed`,
      );
      unlisted.push(err);
      continue;
    }
    for (const info of infos) {
      const w = where.get(info.id);
      if (w) w.push(store);
      else {
        where.set(info.id, [store]);
        list.push(info);
      }
    }
  }
  if (unlisted.length === stores.length && unlisted[0]) throw unlisted[0];
  const load = loadOnce(async (info: SnapshotInfo): Promise<SnapshotManifest> => {
    const reasons: string[] = [];
    for (const store of where.get(info.id)!) {
      try {
        return await loadSnapshot(repo, store, info);
      } catch (err) {
        if (!(err instanceof RegbackupError)) throw err;
        reasons.push(err.message);
      }
    }
    throw new IntegrityError(reasons.join('; '));
  });
  // In the order they were taken: the parent is the snapshot every other command calls the latest.
  const ordered = await inTakenOrder(list, async (info) => (await load(info)).time);
  const bySource: BackupPlan['previous'] = {};
  const skipped: { key: string; targets: string[]; reason: string }[] = [];
  let latest: string | undefined;
  // Newest first, at most 50 snapshots back, until every source has its previous entry.
  let rest = ordered.slice(-50);
  while (rest.length && !names.every((n) => n in bySource)) {
    const found = await newestVerified(rest, load);
    for (const s of found.skipped) {
      skipped.push({ key: s.key, targets: where.get(s.id)!.map((t) => t.name), reason: s.reason });
      logger.error(
        { snapshot: s.id, err: s.reason },
        `snapshot ${s.key} does not verify on any target; it is passed over (neither parent nor previous state of this run)`,
      );
    }
    if (!found.info) break;
    latest ??= found.info.id;
    for (const s of found.value!.sources)
      if (!(s.name in bySource)) bySource[s.name] = { snapshot: found.info.id, entry: s };
    rest = rest.slice(0, rest.indexOf(found.info));
  }
  return { latest, bySource, skipped };
}

/**
 * Cuts a tarball store into `n` shards of about equal numbers of top-level names (grouped by first
 * character, so planning reads only the top directory and keeps no names). S3 stores are one shard.
 */
export async function planShards(src: TarballSourceConfig, n: number): Promise<Shard[]> {
  if (n <= 1 || !('path' in src)) return [{}];
  const counts = new Map<string, number>();
  let total = 0;
  try {
    for await (const e of await opendir(src.path, { bufferSize: 1024 })) {
      const c = String.fromCodePoint(e.name.codePointAt(0)!);
      counts.set(c, (counts.get(c) ?? 0) + 1);
      total++;
    }
  } catch {
    return [{}]; // the part itself reports the unreadable directory
  }
  const chars = [...counts.keys()].sort(compareCodePoints);
  const shards: Shard[] = [];
  let from: string | undefined;
  let acc = 0;
  for (const c of chars) {
    if (acc >= (total / n) * (shards.length + 1) && shards.length < n - 1) {
      shards.push({ ...(from ? { from } : {}), to: c });
      from = c;
    }
    acc += counts.get(c)!;
  }
  shards.push(from ? { from } : {});
  return shards;
}
