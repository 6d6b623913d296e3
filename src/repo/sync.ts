import pLimit from 'p-limit';
import { IntegrityError, RegbackupError } from '../errors.js';
import { log } from '../log.js';
import type { ObjectStore } from '../store/types.js';
import { isLockedKind, withRetention } from './fanout.js';
import { decodeIndexBody, type IndexedPack } from './index-object.js';
import { META_PREFIX, type Repository } from './repository.js';
import { sha256Hex, type MagicName } from './signed.js';
import { loadSnapshot, snapshotInfo } from './snapshot.js';

/**
 * Catching a target up (docs/FORMAT.md §13, "Several targets"): every target holds the same immutable objects,
 * so a target that missed a run (down, full, slow) is repaired by copying what it lacks from a target that
 * has it — ciphertext as it is. Nothing crosses targets unverified: a metadata object is decrypted and its
 * signature checked (as every reader does) before its bytes, which must hash to its name, are copied; a pack
 * must match the size and SHA-256 a verified index object records. Only the objects about to be copied are
 * verified. Objects are copied packs first, then index objects, then snapshots, so a target never holds a
 * snapshot whose data it lacks, even if the copy is interrupted.
 */
export const SYNC_ORDER = ['data/', 'tree/', 'index/', 'snapshots/', 'drills/', 'marks/'] as const;

export type MetaKind = Exclude<MagicName, 'config'>;

/** An object that does not verify on a target: never copied from there; named, with why. */
export interface BadObject {
  key: string;
  /** The target holding the bad copy. */
  from: string;
  reason: string;
}

export interface SyncResult {
  /** Per target: objects and bytes copied to it. */
  copied: Map<string, { objects: number; bytes: number }>;
  /** Targets that could not be caught up (they stay behind). */
  failed: Map<string, Error>;
  /** Objects that do not verify on their source target and were not copied from it. */
  skipped: BadObject[];
}

export interface SyncOptions {
  /** Only these targets (default: the repository's). */
  targets?: readonly ObjectStore[];
  /**
   * Size and SHA-256 of a pack, from an index already verified (the local blob index). Packs named by the
   * index objects this catch-up copies are known without it.
   */
  packHash?: (packId: string) => { size: number; sha256: string } | undefined;
  concurrency?: number;
  /** Only compare (and verify): report what would be copied. */
  dryRun?: boolean;
  /**
   * Objects deleted on purpose (forgotten snapshots, pruned packs): never copied back. A function is called
   * once the index objects and snapshots are listed: a deletion under way on some targets by then was
   * recorded before it started, so it is never taken for a target that missed an object.
   */
  skip?: ReadonlySet<string> | (() => Promise<ReadonlySet<string>>);
  /** Per target name: days a copied object is locked (S3 Object Lock / GCS retention), as a backup's own. */
  retentionDays?: ReadonlyMap<string, number>;
}

/** The kind of metadata object a key names, by its prefix (undefined for packs, config, unknown keys). */
export function metaKindOf(key: string): MetaKind | undefined {
  return (Object.keys(META_PREFIX) as MetaKind[]).find((k) => key.startsWith(META_PREFIX[k]));
}

/** The SHA-256 a metadata object's name gives (its last 64 hex characters), if it has one. */
export function nameHash(key: string): string | undefined {
  const h = key
    .slice(key.lastIndexOf('/') + 1)
    .split('-')
    .pop()!;
  return /^[0-9a-f]{64}$/.test(h) ? h : undefined;
}

/**
 * Reads a metadata object from `store` and verifies it as its readers do (name hash, decryption with our
 * identity, magic, signature; for a snapshot its manifest and name; for an index object its body), then
 * returns the bytes as stored, which hash to the name: byte for byte the object that verified. Throws a
 * RegbackupError naming the object, the target and why (IntegrityError, KeyError when no identity of ours
 * opens it, TargetError/ObjectNotFoundError when it cannot be read).
 */
export async function verifiedMeta(
  repo: Repository,
  key: string,
  store: ObjectStore,
): Promise<{ bytes: Buffer; packs?: IndexedPack[] }> {
  const kind = metaKindOf(key);
  const hash = nameHash(key);
  if (!kind || !hash) throw new IntegrityError(`${key} on ${store.name}: not the name of a metadata object`);
  let packs: IndexedPack[] | undefined;
  if (kind === 'snapshot') {
    const info = snapshotInfo(key);
    if (!info) throw new IntegrityError(`${key} on ${store.name}: not the name of a snapshot`);
    // This copy, not another target's: it is the one about to be copied.
    await loadSnapshot(repo, store, info, { only: true });
  } else {
    const body = await repo.readMeta(kind, key, store);
    if (kind === 'index') packs = decodeIndexBody(body, `index ${key} on ${store.name}`);
  }
  const bytes = await store.getBuffer(key);
  if (sha256Hex(bytes) !== hash)
    throw new IntegrityError(
      `${kind} ${key} on ${store.name}: content does not match its name (changed while read?)`,
    );
  return { bytes, ...(packs ? { packs } : {}) };
}

/** Reads a pack from `store` and checks it against the size and SHA-256 its index records. */
export async function verifiedPack(
  key: string,
  store: ObjectStore,
  want: { size: number; sha256: string },
): Promise<Buffer> {
  const bytes = await store.getBuffer(key);
  if (bytes.length !== want.size)
    throw new IntegrityError(
      `pack ${key} on ${store.name} is ${bytes.length} bytes, its index says ${want.size}`,
    );
  if (sha256Hex(bytes) !== want.sha256)
    throw new IntegrityError(`pack ${key} on ${store.name} does not match the SHA-256 its index records`);
  return bytes;
}

async function names(store: ObjectStore, prefix: string): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  for await (const o of store.list(prefix)) m.set(o.key, o.size);
  return m;
}

/** Per key some target lacks: the targets holding it and those lacking it. */
type Missing = Map<string, { holders: ObjectStore[]; lacking: ObjectStore[] }>;

/** Copies whatever some target has and another lacks, for the prefixes of SYNC_ORDER, once it verifies. */
export async function catchUp(repo: Repository, opts: SyncOptions = {}): Promise<SyncResult> {
  const targets = opts.targets ?? repo.targets;
  const result: SyncResult = { copied: new Map(), failed: new Map(), skipped: [] };
  if (targets.length < 2) return result;
  for (const t of targets) result.copied.set(t.name, { objects: 0, bytes: 0 });
  const limit = pLimit(opts.concurrency ?? 4);
  const live = () => targets.filter((t) => !result.failed.has(t.name));

  const listAll = async (prefix: string) => {
    const per = new Map<string, Map<string, number>>();
    await Promise.all(
      live().map(async (t) => {
        try {
          per.set(t.name, await names(t, prefix));
        } catch (err) {
          result.failed.set(t.name, err as Error);
        }
      }),
    );
    return per;
  };
  const missing = async (prefix: string): Promise<Missing> => {
    const per = await listAll(prefix);
    const out: Missing = new Map();
    const listed = live().filter((t) => per.has(t.name));
    const keys = new Set<string>();
    for (const m of per.values()) for (const k of m.keys()) keys.add(k);
    for (const key of keys) {
      const holders = listed.filter((t) => per.get(t.name)!.has(key));
      const lacking = listed.filter((t) => !per.get(t.name)!.has(key));
      if (lacking.length) out.set(key, { holders, lacking });
    }
    if (!out.size) return out; // targets agree: no deletion records to read (the usual case)
    // Deletions are read after the listing: one under way on some targets by now was recorded before it
    // started, so a target that already lost the object is never taken for one that missed it.
    const skip = typeof opts.skip === 'function' ? await opts.skip() : opts.skip;
    for (const key of out.keys()) if (skip?.has(key)) out.delete(key);
    return out;
  };

  /** Copies `key` from the first holder where it verifies to every target lacking it. */
  const copy = async (
    key: string,
    where: { holders: ObjectStore[]; lacking: ObjectStore[] },
    verify: (from: ObjectStore) => Promise<Buffer>,
  ) => {
    const bytes = await firstVerified(key, where.holders, verify, result.skipped);
    if (!bytes || opts.dryRun) return;
    await put(key, bytes, where.lacking);
  };
  const put = async (key: string, bytes: Buffer, to: readonly ObjectStore[]) => {
    await Promise.all(
      to.map(async (t) => {
        if (result.failed.has(t.name)) return;
        try {
          const days = isLockedKind(key) ? opts.retentionDays?.get(t.name) : undefined;
          await t.put(key, bytes, withRetention(undefined, days));
          const c = result.copied.get(t.name)!;
          c.objects++;
          c.bytes += bytes.length;
        } catch (err) {
          result.failed.set(t.name, err as Error);
        }
      }),
    );
  };
  /** Verifies, without writing yet, each metadata object of `missing` (small: held in memory until written). */
  const verifyAll = async (m: Missing) => {
    const good = new Map<string, { bytes: Buffer; lacking: ObjectStore[]; packs?: IndexedPack[] }>();
    await Promise.all(
      [...m].map(([key, where]) =>
        limit(async () => {
          let packs: IndexedPack[] | undefined;
          const bytes = await firstVerified(
            key,
            where.holders,
            async (from) => {
              const v = await verifiedMeta(repo, key, from);
              packs = v.packs;
              return v.bytes;
            },
            result.skipped,
          );
          if (bytes) good.set(key, { bytes, lacking: where.lacking, ...(packs ? { packs } : {}) });
        }),
      ),
    );
    return good;
  };
  const putAll = async (good: Awaited<ReturnType<typeof verifyAll>>) => {
    if (opts.dryRun) return;
    await Promise.all([...good].map(([key, c]) => limit(() => put(key, c.bytes, c.lacking))));
  };

  // Index objects and snapshots some target lacks, verified first: what an index object records says what
  // a pack must be, and only when a verified index object or snapshot is to be copied can packs be missing
  // (packs are always written before the index objects that name them). Bad ones alone cost no pack listing.
  const indexCopies = await verifyAll(await missing('index/'));
  const snapshotCopies = await verifyAll(await missing('snapshots/'));
  if (indexCopies.size || snapshotCopies.size) {
    const recorded = new Map<string, { size: number; sha256: string }>();
    for (const c of indexCopies.values())
      for (const p of c.packs ?? []) recorded.set(p.info.id, { size: p.info.size, sha256: p.info.sha256 });
    for (const prefix of ['data/', 'tree/']) {
      const jobs: Promise<void>[] = [];
      for (const [key, where] of await missing(prefix)) {
        const id = key.slice(key.lastIndexOf('/') + 1);
        const want = recorded.get(id) ?? opts.packHash?.(id);
        if (!want) {
          // No verified index object names it (a run interrupted before its index object): nothing needs it.
          log().debug({ object: key }, 'pack not named by any verified index object; not copied');
          continue;
        }
        jobs.push(limit(() => copy(key, where, (from) => verifiedPack(key, from, want))));
      }
      await Promise.all(jobs);
    }
  }
  // Then in the order that keeps every target consistent at every moment: index objects, snapshots.
  await putAll(indexCopies);
  await putAll(snapshotCopies);
  for (const prefix of ['drills/', 'marks/']) {
    const jobs: Promise<void>[] = [];
    for (const [key, where] of await missing(prefix))
      jobs.push(
        limit(async () => copy(key, where, async (from) => (await verifiedMeta(repo, key, from)).bytes)),
      );
    await Promise.all(jobs);
  }
  for (const bad of result.skipped)
    log().error(
      { target: bad.from, object: bad.key, err: bad.reason },
      `${bad.key} on target ${bad.from} does not verify; it is not copied from there (\`regbackup repair\` replaces it where another target holds it intact)`,
    );
  for (const [t, c] of result.copied) {
    if (c.objects) log().info({ target: t, objects: c.objects, bytes: c.bytes }, `caught up target ${t}`);
  }
  return result;
}

/** The bytes of `key` from the first of `holders` where `verify` accepts them; failures go to `bad`. */
async function firstVerified(
  key: string,
  holders: readonly ObjectStore[],
  verify: (from: ObjectStore) => Promise<Buffer>,
  bad: BadObject[],
): Promise<Buffer | undefined> {
  for (const from of holders) {
    try {
      return await verify(from);
    } catch (err) {
      if (!(err instanceof RegbackupError)) throw err;
      bad.push({ key, from: from.name, reason: err.message });
    }
  }
  return undefined;
}
