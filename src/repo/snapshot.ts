import os from 'node:os';
import { IntegrityError, KeyError, RegbackupError, UsageError } from '../errors.js';
import { ObjectNotFoundError, type ObjectStore } from '../store/types.js';
import { META_PREFIX, type Repository } from './repository.js';
import { nameTime, parseTimedName } from './format/object-name.js';

/**
 * Snapshots (docs/FORMAT.md §12, "Snapshots"): a signed, encrypted JSON manifest named
 * `snapshots/<UTC time as YYYYMMDDTHHMMSSZ>-<SHA-256 of the object>`; the snapshot ID is the SHA-256 part.
 * The time in the name must equal the time inside: a snapshot cannot be renamed to look newer.
 */
export interface SnapshotManifest {
  version: 1;
  /** ISO 8601, UTC, millisecond precision. */
  time: string;
  host: string;
  repository: string;
  keyId: string;
  /** The previous snapshot this run built on (incremental state), if any. */
  parent?: string;
  tags: string[];
  /** One entry per source; the shape of each depends on its kind (see src/sources/). */
  sources: SourceSnapshot[];
  stats?: Record<string, number>;
}

export interface SourceSnapshot {
  kind: string;
  name: string;
  [key: string]: unknown;
}

export interface SnapshotInfo {
  id: string;
  key: string;
  time: Date;
}

export function newManifest(
  repo: Repository,
  sources: SourceSnapshot[],
  extra: Partial<SnapshotManifest> = {},
): SnapshotManifest {
  return {
    version: 1,
    time: new Date().toISOString(),
    host: os.hostname(),
    repository: repo.config.id,
    keyId: repo.keyId,
    tags: [],
    sources,
    ...extra,
  };
}

/** Seals a manifest: returns the object key and bytes (the caller writes them to the targets). */
export async function sealSnapshot(
  repo: Repository,
  m: SnapshotManifest,
): Promise<{ id: string; key: string; bytes: Buffer }> {
  const sealed = await repo.sealMeta(
    'snapshot',
    Buffer.from(JSON.stringify(m)),
    `${nameTime(new Date(m.time))}-`,
  );
  return { id: sealed.hash, key: sealed.key, bytes: sealed.bytes };
}

/** The snapshot an object key names (`snapshots/<time>-<hash>`), or undefined for a key of another form. */
export function snapshotInfo(key: string): SnapshotInfo | undefined {
  return parseTimedName(META_PREFIX.snapshot, key);
}

/**
 * Snapshots on a target, by the second in their names (nothing is downloaded). Not the order they were taken
 * in when two share a second: whoever needs "latest" or "the newest N" orders them with inTakenOrder.
 */
export async function listSnapshots(store: ObjectStore): Promise<SnapshotInfo[]> {
  const out: SnapshotInfo[] = [];
  for await (const o of store.list(META_PREFIX.snapshot)) {
    const info = snapshotInfo(o.key);
    if (info) out.push(info); // else not ours (or a temporary name): ignored, `check` reports it
  }
  return out.sort(bySnapshotTime);
}

/** Oldest first by `time`; snapshots of the same time by ID. */
export function bySnapshotTime(a: { id: string; time: Date }, b: { id: string; time: Date }): number {
  return a.time.getTime() - b.time.getTime() || a.id.localeCompare(b.id);
}

/**
 * The one order of snapshots, oldest first, by the time each was taken to the millisecond: "latest" (restore,
 * dump, the drill), `--at`, the parent of a backup, retention and every listing that names the newest all use
 * it. A name holds the second only; the manifest holds the millisecond (and readManifest ties it to the
 * name's second, so the manifest's order and the names' order agree across seconds). So only snapshots that
 * share their second with another are read, with `timeOf` (their manifest's time); each of those gets that
 * time as `time`. One whose manifest cannot be read (or whose time is not of its name's second) keeps the
 * name's time, the start of its second, and sorts before the readable ones of that second: an unreadable
 * snapshot never hides a readable one taken in the same second. Ties left (same millisecond) go by ID.
 */
export async function inTakenOrder(
  list: readonly SnapshotInfo[],
  timeOf: (info: SnapshotInfo) => Promise<string | undefined>,
): Promise<SnapshotInfo[]> {
  const sorted = [...list].sort(bySnapshotTime);
  const out: SnapshotInfo[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i + 1;
    while (j < sorted.length && sorted[j]!.time.getTime() === sorted[i]!.time.getTime()) j++;
    if (j - i === 1) out.push(sorted[i]!);
    else {
      const group: SnapshotInfo[] = [];
      for (const info of sorted.slice(i, j)) {
        let t: Date | undefined;
        try {
          const s = await timeOf(info);
          t = s === undefined ? undefined : new Date(s);
        } catch (err) {
          if (!(err instanceof RegbackupError)) throw err;
        }
        const same = t && !Number.isNaN(t.getTime()) && nameTime(t) === nameTime(info.time);
        group.push(same ? { ...info, time: t! } : info);
      }
      out.push(...group.sort(bySnapshotTime));
    }
    i = j;
  }
  return out;
}

/** `load`, called at most once per snapshot ID (a rejection is kept too): for inTakenOrder and its caller. */
export function loadOnce<T>(load: (info: SnapshotInfo) => Promise<T>): (info: SnapshotInfo) => Promise<T> {
  const seen = new Map<string, Promise<T>>();
  return (info) => {
    let p = seen.get(info.id);
    if (!p) {
      p = load(info);
      p.catch(() => undefined); // read by whoever awaits it
      seen.set(info.id, p);
    }
    return p;
  };
}

/** The snapshots of `store` in the order they were taken (inTakenOrder; manifests read from `store`). */
export async function listInTakenOrder(repo: Repository, store: ObjectStore): Promise<SnapshotInfo[]> {
  return inTakenOrder(
    await listSnapshots(store),
    async (info) => (await loadSnapshot(repo, store, info)).time,
  );
}

/**
 * Finds a snapshot by ID, unique ID prefix (at least 4 characters, as with git), or "latest" (the last of
 * `list`, which is in inTakenOrder). A name alone
 * proves nothing: whoever picks "latest" to read or build on uses newestVerified (a forged or corrupt
 * snapshot must never become the latest or a parent).
 */
export function resolveSnapshot(list: readonly SnapshotInfo[], ref: string): SnapshotInfo {
  if (ref === 'latest') {
    const last = list[list.length - 1];
    if (!last) throw new UsageError('there is no snapshot yet');
    return last;
  }
  if (!/^[0-9a-f]{4,64}$/.test(ref))
    throw new UsageError(
      `${JSON.stringify(ref)} is not a snapshot ID (hex, at least 4 characters) or "latest"`,
    );
  const hits = list.filter((s) => s.id.startsWith(ref));
  if (hits.length === 0) throw new UsageError(`no snapshot ${ref}`);
  if (hits.length > 1)
    throw new UsageError(`snapshot ID ${ref} is ambiguous: ${hits.map((h) => h.id.slice(0, 12)).join(', ')}`);
  return hits[0]!;
}

/** A snapshot passed over because it does not verify (on any target that holds it). */
export interface SkippedSnapshot {
  id: string;
  key: string;
  reason: string;
}

/**
 * The newest snapshot of `list` (oldest first) that `load` reads and verifies, with the newer ones it passed
 * over and why: a forged, corrupt or unreadable snapshot is never "latest". An object that none of our
 * identities decrypts is passed over too (anyone can encrypt to the public recipients, or to others); only
 * when every snapshot fails that way is it the key that does not fit, and that KeyError is thrown. Without
 * any snapshot that verifies, `info` is undefined.
 */
export async function newestVerified<T>(
  list: readonly SnapshotInfo[],
  load: (info: SnapshotInfo) => Promise<T>,
): Promise<{ info?: SnapshotInfo; value?: T; skipped: SkippedSnapshot[] }> {
  const skipped: SkippedSnapshot[] = [];
  const keyErrors: KeyError[] = [];
  for (let i = list.length - 1; i >= 0; i--) {
    const info = list[i]!;
    try {
      return { info, value: await load(info), skipped };
    } catch (err) {
      if (!(err instanceof RegbackupError)) throw err;
      if (err instanceof KeyError) keyErrors.push(err);
      skipped.push({ id: info.id, key: info.key, reason: err.message });
    }
  }
  if (keyErrors.length && keyErrors.length === skipped.length) throw keyErrors[0]!;
  return { skipped };
}

/**
 * Reads and verifies a snapshot's manifest: from `store`, else — unless `only` — from each other target of
 * the repository that serves it intact (a copy missing, truncated, corrupt or forged on one target does not
 * make the snapshot unreadable); each target passed over is recorded in `repo.fallbacks` and logged. When no
 * target serves it, the error names what each one answered.
 */
export async function loadSnapshot(
  repo: Repository,
  store: ObjectStore,
  info: SnapshotInfo,
  opts: { only?: boolean } = {},
): Promise<SnapshotManifest> {
  const stores = opts.only ? [store] : [store, ...repo.targets.filter((t) => t !== store)];
  return (await readSnapshot(repo, info, stores)).manifest;
}

/** The manifest of `info` from the first of `stores` that serves it intact, and that store (see loadSnapshot). */
export async function readSnapshot(
  repo: Repository,
  info: SnapshotInfo,
  stores: readonly ObjectStore[],
): Promise<{ manifest: SnapshotManifest; store: ObjectStore }> {
  const failed: { store: ObjectStore; err: RegbackupError }[] = [];
  for (const s of stores) {
    try {
      const manifest = await readManifest(repo, s, info);
      for (const f of failed) repo.noteFallback(info.key, f.store.name, s.name, f.err.message);
      return { manifest, store: s };
    } catch (err) {
      if (!(err instanceof RegbackupError)) throw err;
      failed.push({ store: s, err });
    }
  }
  if (failed.length === 1) throw failed[0]!.err;
  // Absent everywhere but one: what that one answered. A key that opens it nowhere: a key error.
  const real = failed.filter((f) => !(f.err instanceof ObjectNotFoundError));
  if (real.length === 1 || (real.length && real.every((f) => f.err instanceof KeyError))) throw real[0]!.err;
  if (!real.length) throw failed[0]!.err;
  throw new IntegrityError(
    `snapshot ${info.id} cannot be read intact from any target: ${real.map((f) => f.err.message).join('; ')}`,
    { snapshot: info.id },
  );
}

/** The manifest of `info` as `store` holds it, verified. */
async function readManifest(
  repo: Repository,
  store: ObjectStore,
  info: SnapshotInfo,
): Promise<SnapshotManifest> {
  const body = await repo.readMeta('snapshot', info.key, store);
  let m: SnapshotManifest;
  try {
    m = JSON.parse(body.toString('utf8')) as SnapshotManifest;
  } catch {
    throw new IntegrityError(`snapshot ${info.id} on ${store.name}: manifest is not JSON`);
  }
  if (m.version !== 1 || typeof m.time !== 'string' || !Array.isArray(m.sources)) {
    throw new IntegrityError(`snapshot ${info.id} on ${store.name}: manifest of an unknown shape`);
  }
  if (nameTime(new Date(m.time)) !== nameTime(info.time)) {
    throw new IntegrityError(
      `snapshot ${info.id} on ${store.name}: its name says ${info.time.toISOString()} but it was taken at ${m.time} (renamed?)`,
    );
  }
  if (m.repository !== repo.config.id) {
    throw new IntegrityError(
      `snapshot ${info.id} on ${store.name} belongs to repository ${m.repository}, not ${repo.config.id}`,
    );
  }
  return m;
}
