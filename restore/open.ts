import { KeyError, RegbackupError, TargetError, UsageError, messageOf } from '../src/errors.js';
import type { RestoreIdentity } from '../src/repo/keys.js';
import { defaultCacheRoot, Repository } from '../src/repo/repository.js';
import { log } from '../src/log.js';
import {
  inTakenOrder,
  listSnapshots,
  readSnapshot,
  resolveSnapshot,
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
  // A target whose config was replaced (damage, forgery) must not decide which identity is right: the
  // config of a target that names the identity given is preferred (its signature is checked on open).
  const cfg =
    peeked.find((p) => o.identity && p.c?.recipients?.includes(o.identity.recipient))?.c ??
    peeked.find((p) => p.c)?.c;
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
      `restoring needs the restore identity: the age identity whose recipient is ${expected}, the restore.key written by \`regbackup keys generate\` when this repository was created and kept offline since: pass --identity FILE (or set \`identity:\` in the configuration). New keys cannot decrypt existing backups`,
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
}

/**
 * Finds the snapshot: by ID (or unique prefix), "latest", or the newest taken at or before `at` — among the
 * snapshots of every reachable target (one that missed the last backups does not hide the newest one). Its
 * manifest is read from a target that lists it, else from any other that serves it intact (each fallback is
 * recorded in `repo.fallbacks`). When "latest" (or the one chosen by `at`) cannot be read from any target,
 * the newest readable one before it is taken, and each one passed over is logged as an error.
 */
export async function pickSnapshot(
  repo: Repository,
  o: { snapshot?: string; at?: Date },
): Promise<SnapshotChoice> {
  if (o.snapshot && o.at) throw new UsageError('give --snapshot or --at, not both');
  const { all, where } = await allSnapshots(repo);
  let candidates: SnapshotInfo[];
  if (o.at) {
    const at = o.at.getTime();
    candidates = all.filter((s) => s.time.getTime() <= at);
    if (!candidates.length) {
      throw new UsageError(
        all.length
          ? `no snapshot was taken at or before ${o.at.toISOString()} (the oldest is from ${all[0]!.time.toISOString()})`
          : 'there is no snapshot yet',
      );
    }
  } else {
    const info = resolveSnapshot(all, o.snapshot ?? 'latest');
    // An explicit ID is that snapshot or an error; "latest" may step back to an older readable one.
    candidates = o.snapshot && o.snapshot !== 'latest' ? [info] : all;
  }
  let failure: unknown;
  for (let i = candidates.length - 1; i >= 0; i--) {
    const info = candidates[i]!;
    // The targets that list it first (configured order), then the others.
    const holders = where.get(info.id) ?? [];
    const order = [...holders, ...repo.targets.filter((t) => !holders.includes(t))];
    try {
      const { manifest, store } = await readSnapshot(repo, info, order);
      const first = repo.targets[0]!;
      if (store !== first && !holders.includes(first))
        repo.noteFallback(
          info.key,
          first.name,
          store.name,
          `target ${first.name}: object ${info.key} does not exist`,
        );
      return { info, store, manifest };
    } catch (err) {
      // A key error here is about this object only (the identity was checked against the config): one
      // encrypted to another key is a forgery like any other.
      if (!(err instanceof RegbackupError)) throw err;
      failure ??= err;
      if (i > 0)
        log().error(
          { snapshot: info.id, err: err.message },
          `snapshot ${info.id.slice(0, 12)} (${info.time.toISOString()}) cannot be read from any target; taking the one before it`,
        );
    }
  }
  throw failure;
}

/** The snapshots of every target that lists them, oldest first, and which targets list each. */
async function allSnapshots(
  repo: Repository,
): Promise<{ all: SnapshotInfo[]; where: Map<string, ObjectStore[]> }> {
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
  // In the order they were taken (a manifest is read only for snapshots that share a second).
  const ordered = await inTakenOrder(all, async (info) => {
    const holders = where.get(info.id)!;
    return (await readSnapshot(repo, info, [...holders, ...repo.targets.filter((t) => !holders.includes(t))]))
      .manifest.time;
  });
  return { all: ordered, where };
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
