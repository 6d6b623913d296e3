import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { KeyError, RegbackupError } from '../errors.js';
import type { Logger } from '../log.js';
import { decrypt } from '../repo/age.js';
import { BlobIndex, type PackInfo } from '../repo/blob-index.js';
import { decompressBlob } from '../repo/compress.js';
import { blobId } from '../repo/ids.js';
import { decodeIndexBody } from '../repo/index-object.js';
import { packKey, parsePackTrailer } from '../repo/pack.js';
import { BlobReader } from '../repo/reader.js';
import { META_PREFIX, type Repository } from '../repo/repository.js';
import { sha256Hex } from '../repo/signed.js';
import { listSnapshots, loadSnapshot, snapshotInfo, type SnapshotInfo } from '../repo/snapshot.js';
import type { ObjectInfo, ObjectStore } from '../store/types.js';
import { deletedKeys, loadMarks } from './marks.js';
import { scanReferences } from './references.js';

/**
 * `regbackup check`: the structure of each target — every index object and snapshot verifies (signature,
 * name, time), every indexed pack exists with its recorded size, every blob every snapshot needs is in the
 * index, no snapshot is older than its parent — and, with `--read-data`, the data itself: packs downloaded,
 * their SHA-256 checked against the index, decrypted and every blob checked against its keyed ID.
 */
export type ProblemKind =
  | 'bad-index'
  | 'bad-snapshot'
  | 'missing-pack'
  | 'pack-size'
  | 'pack-hash'
  | 'missing-blob'
  | 'bad-blob'
  | 'time-order'
  | 'refused-name'
  | 'missing-index'
  | 'missing-snapshot'
  | 'unreadable';

export interface CheckProblem {
  kind: ProblemKind;
  object: string;
  message: string;
}

export interface TargetCheck {
  target: string;
  ok: boolean;
  snapshots: number;
  indexObjects: number;
  packs: number;
  /** Packs on the target that no index object names (left by an interrupted run; prune removes them). */
  unindexedPacks: number;
  neededBlobs: number;
  packsRead: number;
  bytesRead: number;
  blobsVerified: number;
  problems: CheckProblem[];
}

export interface CheckOptions {
  /** Fraction of packs to read (0: none; 1: all). Needs the restore identity. */
  readData?: number;
  logger: Logger;
  /** At most this many problems of one kind are listed (all are counted). */
  maxListed?: number;
  /**
   * The other targets of the repository (only listed, never read): a snapshot they hold that this target
   * lacks is reported, and so is an index object they hold when blobs a snapshot needs are not indexed here.
   */
  peers?: readonly ObjectStore[];
}

/** Passes of a check at most, while the repository keeps changing under it. */
const CHECK_PASSES = 3;

/**
 * Checks `store`. A prune or forget running meanwhile deletes objects the check listed (index objects it
 * rewrote, packs, forgotten snapshots): a pass that finds problems while the repository changed under it
 * (its index objects, snapshots or marks) is done again, a few times; damage persists, a race does not.
 */
/** A target's check before anything is counted: OK, no problem yet. */
export function emptyTargetCheck(target: string): TargetCheck {
  return {
    target,
    ok: true,
    snapshots: 0,
    indexObjects: 0,
    packs: 0,
    unindexedPacks: 0,
    neededBlobs: 0,
    packsRead: 0,
    bytesRead: 0,
    blobsVerified: 0,
    problems: [],
  };
}

export async function checkTarget(
  repo: Repository,
  store: ObjectStore,
  opts: CheckOptions,
): Promise<TargetCheck> {
  for (let pass = 1; ; pass++) {
    const before = await metadataKeys(store);
    const result = await checkPass(repo, store, opts);
    if (result.ok || pass >= CHECK_PASSES || (await metadataKeys(store)) === before) return result;
    opts.logger.info(
      { target: store.name, problems: result.problems.length },
      'the repository changed during the check (a prune or forget ran); checking again',
    );
  }
}

async function metadataKeys(store: ObjectStore): Promise<string> {
  const keys: string[] = [];
  for (const prefix of [META_PREFIX.index, META_PREFIX.snapshot, META_PREFIX.mark])
    for await (const o of store.list(prefix)) keys.push(o.key);
  return keys.join('\n');
}

async function checkPass(repo: Repository, store: ObjectStore, opts: CheckOptions): Promise<TargetCheck> {
  const readData = opts.readData ?? 0;
  if (readData > 0 && !repo.access.restore)
    throw new KeyError(
      'check --read-data needs the restore identity (--identity FILE): data packs are readable only with it',
    );
  const maxListed = opts.maxListed ?? 100;
  const result = emptyTargetCheck(store.name);
  const counts = new Map<ProblemKind, number>();
  const problem = (kind: ProblemKind, object: string, message: string) => {
    const n = (counts.get(kind) ?? 0) + 1;
    counts.set(kind, n);
    if (n <= maxListed) result.problems.push({ kind, object, message });
    else if (n === maxListed + 1)
      result.problems.push({ kind, object: '…', message: `more problems of this kind are not listed` });
  };
  await mkdir(repo.cacheDir, { recursive: true });
  const tmp = await mkdtemp(path.join(repo.cacheDir, `check-${store.name}-`));
  const index = BlobIndex.open(path.join(tmp, 'index'));
  try {
    // Index objects, each read and verified (a bad one is a problem, not the end of the check).
    for await (const o of store.list(META_PREFIX.index)) {
      result.indexObjects++;
      try {
        for (const p of decodeIndexBody(await repo.readMeta('index', o.key, store), o.key))
          index.addPack(p.info, p.entries);
      } catch (err) {
        if (!(err instanceof RegbackupError)) throw err;
        problem('bad-index', o.key, err.message);
      }
    }
    index.persist();
    // Packs: present, and of the size the index records.
    const objects = new Map<string, ObjectInfo>();
    for (const prefix of ['data/', 'tree/']) for await (const o of store.list(prefix)) objects.set(o.key, o);
    const packs: PackInfo[] = [...index.packs()];
    result.packs = packs.length;
    const indexed = new Set<string>();
    for (const p of packs) {
      const key = packKey(p.type, p.id);
      indexed.add(key);
      const o = objects.get(key);
      if (!o) problem('missing-pack', key, `pack ${key} is in the index but not on the target`);
      else if (o.size !== p.size)
        problem('pack-size', key, `pack ${key} is ${o.size} bytes, the index says ${p.size}`);
    }
    for (const k of objects.keys()) if (!indexed.has(k)) result.unindexedPacks++;

    // Snapshots: each verifies; none is older than its parent.
    const list = await listSnapshots(store);
    const good: SnapshotInfo[] = [];
    const times = new Map(list.map((s) => [s.id, s.time]));
    for (const info of list) {
      result.snapshots++;
      try {
        // This target's copy: check reports what is on the target, never what another would serve.
        const m = await loadSnapshot(repo, store, info, { only: true });
        good.push(info);
        const parentTime = m.parent ? times.get(m.parent) : undefined;
        if (parentTime && parentTime.getTime() > Date.parse(m.time)) {
          problem(
            'time-order',
            info.key,
            `snapshot ${info.id.slice(0, 12)} (${m.time}) is older than its parent ${m.parent!.slice(0, 12)} (${parentTime.toISOString()})`,
          );
        }
      } catch (err) {
        if (!(err instanceof RegbackupError)) throw err;
        problem('bad-snapshot', info.key, err.message);
      }
    }
    // Every blob the snapshots need is in the index.
    const reader = new BlobReader(repo, index, [store]);
    try {
      const refs = await scanReferences(repo, reader, store, good, tmp);
      const rec = index.records();
      let cur = rec.next();
      for await (const hex of refs.ids) {
        result.neededBlobs++;
        while (!cur.done && cur.value.id.toString('hex') < hex) cur = rec.next();
        if (cur.done || cur.value.id.toString('hex') !== hex)
          problem('missing-blob', hex, `blob ${hex} is needed by a snapshot but no index object names it`);
      }
      rec.return(undefined);
      // Names a restore refuses (written by an older version): the rest of the snapshot restores, not these.
      for (const r of refs.stats.refused)
        problem(
          'refused-name',
          r.where,
          `${r.where} lists ${r.name}, a name a restore refuses (it ${r.reason}): every other file restores, not this one`,
        );
      const unlisted = refs.stats.refusedNames - refs.stats.refused.length;
      if (unlisted > 0) problem('refused-name', '…', `${unlisted} more names a restore refuses`);
    } catch (err) {
      if (!(err instanceof RegbackupError)) throw err;
      problem('unreadable', 'listings', `a listing cannot be read: ${err.message}`);
    }
    // Blobs a snapshot needs that this target's index lacks: an index object another target holds may be
    // what is missing here (named). Only then: index objects differ between targets while a prune runs.
    if ((counts.has('missing-blob') || counts.has('unreadable')) && opts.peers?.length) {
      for (const [key, on] of await absentHere(store, opts.peers, META_PREFIX.index))
        problem(
          'missing-index',
          key,
          `index object ${key} is on ${on.join(', ')} but not on ${store.name}: blobs it names are missing from this target's index (repair copies it)`,
        );
    }

    // --read-data: download, hash, decrypt, verify.
    if (readData > 0) {
      const chosen = packs.filter(() => readData >= 1 || Math.random() < readData);
      for (const p of chosen) {
        const key = packKey(p.type, p.id);
        if (!objects.has(key)) continue;
        let bytes: Buffer;
        try {
          bytes = await store.getBuffer(key);
        } catch (err) {
          if (!(err instanceof RegbackupError)) throw err;
          problem('unreadable', key, err.message);
          continue;
        }
        result.packsRead++;
        result.bytesRead += bytes.length;
        if (sha256Hex(bytes) !== p.sha256) {
          problem('pack-hash', key, `pack ${key} does not match its SHA-256 (corrupt)`);
          continue;
        }
        try {
          const plain = await decrypt(repo.identities!, bytes);
          for (const e of parsePackTrailer(plain, key)) {
            const raw = decompressBlob(
              plain.subarray(e.offset, e.offset + e.length),
              e.compression,
              e.rawLength,
            );
            if (!blobId(repo.idKey, e.type, raw).equals(e.id))
              throw new Error(`blob ${e.id.toString('hex')} does not match its ID`);
            result.blobsVerified++;
          }
        } catch (err) {
          if (err instanceof KeyError) throw err;
          problem('bad-blob', key, `pack ${key}: ${(err as Error).message}`);
        }
      }
    }
    if (opts.peers?.length) await missingSnapshots(repo, store, opts.peers, problem);
    result.ok = counts.size === 0;
    opts.logger.info(
      { target: store.name, ok: result.ok, problems: [...counts].map(([k, n]) => `${k}:${n}`).join(',') },
      'check finished',
    );
    return result;
  } finally {
    index.close();
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Objects under `prefix` that some of `peers` list and `store` does not (with the peers that list them). */
async function absentHere(
  store: ObjectStore,
  peers: readonly ObjectStore[],
  prefix: string,
): Promise<Map<string, string[]>> {
  const here = new Set<string>();
  for await (const o of store.list(prefix)) here.add(o.key);
  const out = new Map<string, string[]>();
  for (const peer of peers) {
    try {
      for await (const o of peer.list(prefix)) {
        if (here.has(o.key)) continue;
        const on = out.get(o.key);
        if (on) on.push(peer.name);
        else out.set(o.key, [peer.name]);
      }
    } catch (err) {
      // A peer that does not answer says nothing about this target (its own check reports it).
      if (!(err instanceof RegbackupError)) throw err;
    }
  }
  return out;
}

/**
 * Snapshots another target holds and this one lacks — deleted here, or a target that missed a run — except
 * those `forget` removed (a `forgotten` mark is written before the deletions). Looked at again after the
 * marks are read: a backup committing while check runs is not reported.
 */
async function missingSnapshots(
  repo: Repository,
  store: ObjectStore,
  peers: readonly ObjectStore[],
  problem: (kind: ProblemKind, object: string, message: string) => void,
): Promise<void> {
  const absent = [...(await absentHere(store, peers, META_PREFIX.snapshot))].filter(
    ([key]) => snapshotInfo(key) !== undefined,
  );
  if (!absent.length) return;
  const forgotten = new Set<string>();
  for (const s of [store, ...peers]) {
    try {
      for (const k of deletedKeys(await loadMarks(repo, s))) forgotten.add(k);
    } catch (err) {
      if (!(err instanceof RegbackupError)) throw err;
    }
  }
  for (const [key, on] of absent) {
    if (forgotten.has(key) || (await store.stat(key))) continue;
    // Only a snapshot that verifies where it is counts as missing here (a forgery elsewhere does not).
    if (!(await verifiesOnAny(repo, key, peers))) continue;
    problem(
      'missing-snapshot',
      key,
      `snapshot ${key} is on ${on.join(', ')} but not on ${store.name} (the next backup or repair copies it)`,
    );
  }
}

/** Whether the snapshot `key` verifies on one of `stores`. */
async function verifiesOnAny(
  repo: Repository,
  key: string,
  stores: readonly ObjectStore[],
): Promise<boolean> {
  const info: SnapshotInfo = snapshotInfo(key)!;
  for (const s of stores) {
    try {
      await loadSnapshot(repo, s, info, { only: true });
      return true;
    } catch (err) {
      if (!(err instanceof RegbackupError)) throw err;
    }
  }
  return false;
}
