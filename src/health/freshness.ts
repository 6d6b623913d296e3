import cron from 'node-cron';
import type { Config } from '../config/schema.js';
import { messageOf } from '../errors.js';
import { loadWorkerKey } from '../repo/keys.js';
import { defaultCacheRoot, Repository } from '../repo/repository.js';
import { listInTakenOrder, loadSnapshot, type SnapshotInfo, type SourceSnapshot } from '../repo/snapshot.js';
import type { ObjectStore } from '../store/types.js';

/**
 * How old the data of each source is, read from the repository itself (the snapshot manifests on the
 * targets, with the worker key), not from a record of runs: a source carried over from an earlier snapshot
 * (it could not be read) is as old as the snapshot it was last read in; a source in no snapshot was never
 * backed up. Every run — by hand, from cron or by the worker — is seen, on whatever host it ran.
 */
export interface SourceFreshness {
  source: string;
  /** Time of the newest snapshot holding data of this source read in that run (all its databases). */
  fresh?: string;
  /** That snapshot, and the target it was found on. */
  snapshot?: string;
  target?: string;
  /** The newest snapshot carries it over (or a database of it) from an older one. */
  carried?: boolean;
  /** Not found freshly read within the snapshots examined: older than this time. */
  olderThan?: string;
  /** No snapshot on the target holds data of it read in that run: never backed up. */
  never?: boolean;
}

export interface FreshnessReport {
  sources: Record<string, SourceFreshness>;
  /** The newest snapshots of a target that cannot be read (newest first): target, snapshot, why. */
  unreadable: { target: string; snapshot: string; error: string }[];
  /** Targets whose snapshots could not be listed or read at all. */
  errors: Record<string, string>;
}

/** How many manifests are read back per target looking for a source's last fresh read. */
const MAX_WALK = 50;

const DEFAULT_RPO = 2 * 3600_000;
const MIN_DERIVED_RPO = 30 * 60_000;

/**
 * The RPO threshold: `alerts.rpoThreshold` (for a source, its own `rpoThreshold` first); when unset, twice
 * the longest gap between two runs of `schedule.backup` over the next week (one run may be missed or late,
 * not two), at least 30 minutes; without a backup schedule, 2 hours.
 */
export function rpoThreshold(config: Config, source?: string): number {
  const own = source
    ? [...config.sources.couchdb, ...config.sources.tarballs].find((s) => s.name === source)?.rpoThreshold
    : undefined;
  if (own !== undefined) return own;
  if (config.alerts?.rpoThreshold !== undefined) return config.alerts.rpoThreshold;
  const pattern = config.schedule?.backup;
  if (!pattern) return DEFAULT_RPO;
  return Math.max(MIN_DERIVED_RPO, 2 * longestGap(pattern.trim(), config.schedule!.timezone));
}

/** The longest time between two consecutive firings of a cron pattern, over the next week (or 500 firings). */
export function longestGap(pattern: string, timezone: string): number {
  const task = cron.createTask(pattern, () => undefined, { timezone });
  let runs: Date[];
  try {
    runs = task.getNextRuns(500);
  } finally {
    void task.destroy();
  }
  const week = Date.now() + 8 * 86400_000;
  let gap = 0;
  for (let i = 1; i < runs.length && runs[i - 1]!.getTime() < week; i++)
    gap = Math.max(gap, runs[i]!.getTime() - runs[i - 1]!.getTime());
  return gap || DEFAULT_RPO;
}

interface Item {
  source: string;
  /** A database carried over inside an otherwise fresh CouchDB entry. */
  db?: string;
}

/** Is this item of the manifest's entry data read in that very run? */
function freshIn(entry: SourceSnapshot | undefined, item: Item): 'fresh' | 'carried' | 'absent' {
  if (!entry) return 'absent';
  if (entry.carriedFrom) return 'carried';
  if (!item.db) return 'fresh';
  const db = (entry.databases as { name: string; carriedFrom?: string }[] | undefined)?.find(
    (d) => d.name === item.db,
  );
  if (!db) return 'absent';
  return db.carriedFrom ? 'carried' : 'fresh';
}

/** The configured sources' freshness on one target, reading manifests newest first. */
async function targetFreshness(
  repo: Repository,
  store: ObjectStore,
  sources: string[],
  report: FreshnessReport,
): Promise<Record<string, SourceFreshness>> {
  const list: SnapshotInfo[] = await listInTakenOrder(repo, store);
  const out: Record<string, SourceFreshness> = {};
  if (list.length === 0) return out;
  const pending: Item[] = sources.map((source) => ({ source }));
  const carried = new Set<string>();
  const freshAt = new Map<string, { time: string; snapshot: string }[]>();
  let oldestSeen: string | undefined;
  let i = list.length - 1;
  for (let read = 0; i >= 0 && read < MAX_WALK && pending.length; i--, read++) {
    const info = list[i]!;
    let sources: SourceSnapshot[];
    let time: string;
    try {
      const m = await loadSnapshot(repo, store, info);
      sources = m.sources;
      time = m.time;
    } catch (err) {
      // Newer than every snapshot read on this target: the newest snapshot (or the newest ones) is unreadable.
      if (oldestSeen === undefined)
        report.unreadable.push({ target: store.name, snapshot: info.id, error: messageOf(err) });
      continue;
    }
    oldestSeen = time;
    for (const item of [...pending]) {
      const entry = sources.find((s) => s.name === item.source);
      const state = freshIn(entry, item);
      if (state === 'carried') carried.add(item.source);
      if (state !== 'fresh') continue;
      pending.splice(pending.indexOf(item), 1);
      const at = freshAt.get(item.source) ?? [];
      at.push({ time, snapshot: info.id });
      freshAt.set(item.source, at);
      if (item.db) continue;
      // A fresh entry with databases carried over: each is as old as the run that last read it.
      for (const d of (entry!.databases as { name: string; carriedFrom?: string }[] | undefined) ?? [])
        if (d.carriedFrom) {
          carried.add(item.source);
          pending.push({ source: item.source, db: d.name });
        }
    }
  }
  for (const source of sources) {
    const open = pending.some((p) => p.source === source);
    const at = freshAt.get(source) ?? [];
    const oldest = at.reduce<(typeof at)[number] | undefined>(
      (a, b) => (a && Date.parse(a.time) <= Date.parse(b.time) ? a : b),
      undefined,
    );
    out[source] = {
      source,
      ...(open ? {} : oldest ? { fresh: oldest.time, snapshot: oldest.snapshot, target: store.name } : {}),
      ...(carried.has(source) ? { carried: true } : {}),
      ...(open && i < 0 ? { never: true } : open && oldestSeen ? { olderThan: oldestSeen } : {}),
    };
  }
  return out;
}

/**
 * Each configured source's freshness: on every target that answers, the newest snapshot that read it; the
 * best of the targets counts (each target is a complete repository; a target lagging behind is its own
 * problem). Needs the worker key (metadata only: no backed-up content is decrypted).
 */
export async function probeFreshness(config: Config, stores: ObjectStore[]): Promise<FreshnessReport> {
  const sources = [...config.sources.couchdb, ...config.sources.tarballs].map((s) => s.name);
  const report: FreshnessReport = { sources: {}, unreadable: [], errors: {} };
  const worker = await loadWorkerKey(config.keys);
  const { repo, unreachable } = await Repository.open(
    stores,
    { worker },
    { cacheRoot: config.cache ?? defaultCacheRoot() },
  );
  for (const u of unreachable) report.errors[u.target] = u.error.message;
  try {
    const perTarget = await Promise.all(
      repo.targets.map(async (store) => {
        try {
          return await targetFreshness(repo, store, sources, report);
        } catch (err) {
          report.errors[store.name] = messageOf(err);
          return {};
        }
      }),
    );
    for (const source of sources) {
      const seen = perTarget.map((t) => t[source]).filter((f): f is SourceFreshness => Boolean(f));
      const best = seen.filter((f) => f.fresh).sort((a, b) => Date.parse(b.fresh!) - Date.parse(a.fresh!))[0];
      if (best) report.sources[source] = best;
      else if (seen.length) report.sources[source] = seen.find((f) => !f.never) ?? seen[0]!;
    }
  } finally {
    repo.close();
  }
  return report;
}
