import { IntegrityError, KeyError, TargetError, UsageError, messageOf } from '../src/errors.js';
import type { RestoreIdentity } from '../src/repo/keys.js';
import { defaultCacheRoot, Repository } from '../src/repo/repository.js';
import { log } from '../src/log.js';
import {
  bySnapshotTime,
  listSnapshots,
  loadSnapshot,
  newestVerified,
  resolveSnapshot,
  type SkippedSnapshot,
  type SnapshotInfo,
  type SnapshotManifest,
} from '../src/repo/snapshot.js';
import { ObjectNotFoundError, type ObjectStore } from '../src/store/types.js';

/**
 * Opening the repository for a restore: which targets, with which identity, and which snapshot. The identity
 * is checked against the repository's recipients (read from the unencrypted `config` object) before anything
 * is decrypted, so that a missing or wrong identity gives one clear message that names the recipient it must
 * match.
 */
export interface OpenRestoreOptions {
  /** The configured targets, in order. */
  targets: ObjectStore[];
  /** Only this target (`--from`). */
  from?: string;
  identity?: RestoreIdentity;
  /** Where the identity came from, for messages. */
  identityFile?: string;
  cacheRoot?: string;
  indexMemory?: number;
}

export interface OpenedRestore {
  repo: Repository;
  unreachable: { target: string; error: string }[];
}

interface PeekedConfig {
  id?: string;
  keyId?: string;
  recipients?: string[];
}

/** The config object's body, without trusting it (its signature is checked by Repository.open). */
function peek(bytes: Buffer): PeekedConfig | undefined {
  try {
    if (bytes.length > 1024 * 1024 || bytes.length < 13 + 64) return undefined;
    return JSON.parse(bytes.subarray(13, bytes.length - 64).toString('utf8')) as PeekedConfig;
  } catch {
    return undefined;
  }
}

export function selectTargets(targets: ObjectStore[], from?: string): ObjectStore[] {
  if (!from) return targets;
  const t = targets.filter((s) => s.name === from);
  if (!t.length)
    throw new UsageError(`no target named ${from} (configured: ${targets.map((s) => s.name).join(', ')})`);
  return t;
}

export async function openForRestore(o: OpenRestoreOptions): Promise<OpenedRestore> {
  const stores = selectTargets(o.targets, o.from);
  // Every target at once: an unreachable one (a provider outage) costs its timeout once, not per step.
  const peeked = await Promise.all(
    stores.map(async (s) => {
      try {
        const c = peek(await s.getBuffer('config'));
        return c ? { s, c } : { s, error: 'its config object is unreadable' };
      } catch (err) {
        return { s, error: err instanceof ObjectNotFoundError ? 'holds no repository' : messageOf(err) };
      }
    }),
  );
  const cfg = peeked.find((p) => p.c)?.c;
  const down = peeked.filter((p) => !p.c).map((p) => ({ target: p.s.name, error: p.error! }));
  if (!cfg)
    throw new TargetError(
      `no target can be read (${down.map((d) => `${d.target}: ${d.error}`).join('; ')})`,
      { unreachable: down.map((d) => d.target) },
    );
  const recipients = cfg.recipients ?? [];
  const expected = `${recipients.join(' or ') || '(unknown recipient)'} (key ID ${cfg.keyId ?? '?'})`;
  if (!o.identity) {
    throw new KeyError(
      `restoring needs the restore identity: the age identity whose recipient is ${expected}, written by \`regbackup keys generate\` as restore.key; pass --identity FILE (or set \`identity:\` in the configuration)`,
    );
  }
  if (recipients.length && !recipients.includes(o.identity.recipient)) {
    throw new KeyError(
      `the identity ${o.identityFile ? `in ${o.identityFile} ` : ''}(recipient ${o.identity.recipient}, key ID ${o.identity.keyId}) does not match this repository: its content is encrypted to ${expected}; use the restore identity with that recipient`,
    );
  }
  const live = peeked.filter((p) => p.c).map((p) => p.s);
  const { repo, unreachable } = await Repository.open(
    live,
    { restore: o.identity },
    { cacheRoot: o.cacheRoot ?? defaultCacheRoot(), indexMemory: o.indexMemory },
  );
  return {
    repo,
    unreachable: [...down, ...unreachable.map((u) => ({ target: u.target, error: u.error.message }))],
  };
}

export interface SnapshotChoice {
  info: SnapshotInfo;
  /** The target the manifest was read from (its index objects cover the snapshot). */
  store: ObjectStore;
  manifest: SnapshotManifest;
  /** Newer snapshots passed over for "latest" (or --at) because they verify on no target. */
  skipped?: SkippedSnapshot[];
}

/**
 * Finds the snapshot: by ID (or unique prefix), "latest", or the newest taken at or before `at` — among the
 * snapshots of every reachable target (one that missed the last backups does not hide the newest one).
 */
export async function pickSnapshot(
  repo: Repository,
  o: { snapshot?: string; at?: Date },
): Promise<SnapshotChoice> {
  if (o.snapshot && o.at) throw new UsageError('give --snapshot or --at, not both');
  const where = new Map<string, ObjectStore[]>();
  const all: SnapshotInfo[] = [];
  const problems: string[] = [];
  for (const store of repo.targets) {
    let list: SnapshotInfo[];
    try {
      list = await listSnapshots(store);
    } catch (err) {
      problems.push(`${store.name}: ${messageOf(err)}`);
      continue;
    }
    for (const s of list) {
      const w = where.get(s.id);
      if (w) w.push(store);
      else {
        where.set(s.id, [store]);
        all.push(s);
      }
    }
  }
  if (!all.length && problems.length)
    throw new TargetError(`no target lists its snapshots (${problems.join('; ')})`);
  all.sort(bySnapshotTime);
  const load = async (info: SnapshotInfo): Promise<{ store: ObjectStore; manifest: SnapshotManifest }> => {
    let last: unknown;
    for (const store of where.get(info.id) ?? []) {
      try {
        return { store, manifest: await loadSnapshot(repo, store, info) };
      } catch (err) {
        // Even a KeyError is this copy's: a forged object may be encrypted to anyone; the next target may hold it intact.
        last = err;
      }
    }
    throw last instanceof Error
      ? last
      : new IntegrityError(`snapshot ${info.id} cannot be read from any target`);
  };
  if (o.snapshot && o.snapshot !== 'latest') {
    const info = resolveSnapshot(all, o.snapshot);
    return { info, ...(await load(info)) };
  }
  // "latest" or --at: the newest that verifies (a forged or corrupt snapshot is passed over, and named).
  const at = o.at?.getTime();
  const candidates = at === undefined ? all : all.filter((s) => s.time.getTime() <= at);
  if (!candidates.length) {
    if (!o.at) throw new UsageError('there is no snapshot yet');
    throw new UsageError(
      all.length
        ? `no snapshot was taken at or before ${o.at.toISOString()} (the oldest is from ${all[0]!.time.toISOString()})`
        : 'there is no snapshot yet',
    );
  }
  const found = await newestVerified(candidates, load);
  for (const s of found.skipped)
    log().error(
      { snapshot: s.id, err: s.reason },
      `snapshot ${s.key} does not verify on any target; passed over for an older one`,
    );
  if (!found.info)
    throw new IntegrityError(
      `no snapshot${o.at ? ` taken at or before ${o.at.toISOString()}` : ''} verifies on any target (${found.skipped
        .map((s) => `${s.id.slice(0, 12)}: ${s.reason}`)
        .join('; ')})`,
    );
  return { info: found.info, ...found.value!, skipped: found.skipped };
}

/** Parses `--at`: an ISO 8601 time (or anything Date understands), or an age such as "2h" / "3d ago". */
export function parseAt(s: string, now = Date.now()): Date {
  const ago = /^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*(ago)?\s*$/i.exec(s);
  if (ago) {
    const unit = { s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }[
      ago[2]!.toLowerCase() as 's'
    ];
    return new Date(now - Number(ago[1]) * unit);
  }
  const t = Date.parse(s);
  if (Number.isNaN(t))
    throw new UsageError(
      `--at ${JSON.stringify(s)} is not a time (use e.g. 2026-11-26T04:00:00Z, or an age such as 6h)`,
    );
  return new Date(t);
}
