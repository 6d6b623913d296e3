import pLimit from 'p-limit';
import { IntegrityError } from '../errors.js';
import { log } from '../log.js';
import type { ObjectStore } from '../store/types.js';
import { isLockedKind, withRetention } from './fanout.js';
import { sha256Hex } from './signed.js';

/**
 * Catching a target up (docs/FORMAT.md, "Several targets"): every target holds the same immutable objects,
 * so a target that missed a run (down, full, slow) is repaired by copying what it lacks from a target that
 * has it — ciphertext as it is, never decrypted, checked against its SHA-256 (the name of metadata objects;
 * the index's record for packs). Objects are copied packs first, then index objects, then snapshots, so a
 * target never holds a snapshot whose data it lacks, even if the copy is interrupted.
 */
export const SYNC_ORDER = ['data/', 'tree/', 'index/', 'snapshots/', 'drills/', 'marks/'] as const;

export interface SyncResult {
  /** Per target: objects and bytes copied to it. */
  copied: Map<string, { objects: number; bytes: number }>;
  /** Targets that could not be caught up (they stay behind). */
  failed: Map<string, Error>;
  /** Objects that were corrupt on their source target and were not copied. */
  skipped: { key: string; from: string; reason: string }[];
}

export interface SyncOptions {
  /** SHA-256 (hex) of a pack, from the index, to check a copied pack. */
  packHash?: (packId: string) => string | undefined;
  concurrency?: number;
  /** Only compare: report what would be copied. */
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

async function names(store: ObjectStore, prefix: string): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  for await (const o of store.list(prefix)) m.set(o.key, o.size);
  return m;
}

function expectedHash(key: string, opts: SyncOptions): string | undefined {
  const last = key.slice(key.lastIndexOf('/') + 1);
  if (key.startsWith('data/') || key.startsWith('tree/')) return opts.packHash?.(last);
  const h = last.split('-').pop()!;
  return /^[0-9a-f]{64}$/.test(h) ? h : undefined;
}

/** Copies whatever some target has and another lacks, for the prefixes of SYNC_ORDER. */
export async function catchUp(targets: readonly ObjectStore[], opts: SyncOptions = {}): Promise<SyncResult> {
  const result: SyncResult = { copied: new Map(), failed: new Map(), skipped: [] };
  if (targets.length < 2) return result;
  let skip = typeof opts.skip === 'function' ? undefined : opts.skip;
  for (const t of targets) result.copied.set(t.name, { objects: 0, bytes: 0 });
  const limit = pLimit(opts.concurrency ?? 4);

  // Cheap check first: equal index and snapshot sets mean every target already holds every pack they
  // reference (packs are always written before the index objects that name them).
  let needPacks = false;
  const listings = new Map<string, Map<string, Map<string, number>>>();
  const listAll = async (prefix: string) => {
    const per = new Map<string, Map<string, number>>();
    await Promise.all(
      targets.map(async (t) => {
        if (result.failed.has(t.name)) return;
        try {
          per.set(t.name, await names(t, prefix));
        } catch (err) {
          result.failed.set(t.name, err as Error);
        }
      }),
    );
    listings.set(prefix, per);
    return per;
  };
  for (const prefix of ['index/', 'snapshots/']) await listAll(prefix);
  if (typeof opts.skip === 'function') skip = await opts.skip();
  for (const prefix of ['index/', 'snapshots/']) {
    const per = listings.get(prefix)!;
    const sets = [...per.values()].map((m) => new Set([...m.keys()].filter((k) => !skip?.has(k))));
    if (sets.some((s) => s.size !== sets[0]!.size || [...s].some((k) => !sets[0]!.has(k)))) needPacks = true;
  }
  let order: readonly string[] = SYNC_ORDER;
  if (!needPacks) {
    // Snapshots and indexes agree: only drill reports and prune marks may differ.
    order = ['drills/', 'marks/'];
    let differ = false;
    for (const prefix of order) {
      const sets = [...(await listAll(prefix)).values()].map(
        (m) => new Set([...m.keys()].filter((k) => !skip?.has(k))),
      );
      if (sets.some((s) => s.size !== sets[0]!.size || [...s].some((k) => !sets[0]!.has(k)))) differ = true;
    }
    if (!differ) return result;
  }

  for (const prefix of order) {
    const per = listings.get(prefix) ?? (await listAll(prefix));
    const union = new Map<string, string[]>(); // key -> targets that have it
    for (const [t, m] of per) for (const k of m.keys()) (union.get(k) ?? union.set(k, []).get(k)!).push(t);
    const jobs: Promise<void>[] = [];
    for (const [key, holders] of union) {
      if (skip?.has(key)) continue;
      for (const t of targets) {
        if (result.failed.has(t.name) || holders.includes(t.name) || !per.has(t.name)) continue;
        jobs.push(
          limit(async () => {
            if (result.failed.has(t.name)) return;
            for (const from of holders) {
              const src = targets.find((x) => x.name === from)!;
              let bytes: Buffer;
              try {
                bytes = await src.getBuffer(key);
                const want = expectedHash(key, opts);
                if (want && sha256Hex(bytes) !== want)
                  throw new IntegrityError(`${key} on ${from} does not match its SHA-256`);
              } catch (err) {
                result.skipped.push({ key, from, reason: (err as Error).message });
                continue;
              }
              if (opts.dryRun) return;
              try {
                const days = isLockedKind(key) ? opts.retentionDays?.get(t.name) : undefined;
                await t.put(key, bytes, withRetention(undefined, days));
                const c = result.copied.get(t.name)!;
                c.objects++;
                c.bytes += bytes.length;
              } catch (err) {
                result.failed.set(t.name, err as Error);
              }
              return;
            }
          }),
        );
      }
    }
    await Promise.all(jobs);
  }
  for (const [t, c] of result.copied) {
    if (c.objects) log().info({ target: t, objects: c.objects, bytes: c.bytes }, `caught up target ${t}`);
  }
  return result;
}
