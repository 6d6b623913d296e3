import { KeyError, RegbackupError } from '../errors.js';
import type { Logger } from '../log.js';
import { decodeIndexBody } from '../repo/index-object.js';
import { packKey } from '../repo/pack.js';
import { META_PREFIX, type Repository } from '../repo/repository.js';
import { sha256Hex } from '../repo/signed.js';
import { ObjectNotFoundError, type ObjectStore } from '../store/types.js';
import { deletedKeys, loadMarks } from './marks.js';
import { isLockedKind, withRetention } from '../repo/fanout.js';

/**
 * `regbackup repair`: makes a target hold every object, intact, by copying from targets where the object
 * verifies — ciphertext as it is (every target holds the same bytes), never decrypted. Metadata objects are
 * verified by the SHA-256 in their names, packs by the size and SHA-256 the index records (the hash needs the
 * pack downloaded: `readData` checks it on the damaged side; the copied side is always checked).
 */
export interface RepairOptions {
  logger: Logger;
  /** Also download and hash every pack of the damaged target (finds same-size corruption). */
  readData?: boolean;
  dryRun?: boolean;
  /** Days the repaired target locks objects (S3 Object Lock / GCS retention): copies are locked too. */
  retentionDays?: number;
}

export interface RepairResult {
  target: string;
  copied: { key: string; from: string; reason: 'missing' | 'corrupt' }[];
  /** Objects that no source holds intact. */
  unrepairable: { key: string; reason: string }[];
  bytes: number;
}

const META = [META_PREFIX.index, META_PREFIX.snapshot, META_PREFIX.drill, META_PREFIX.mark];

function nameHash(key: string): string | undefined {
  const h = key
    .slice(key.lastIndexOf('/') + 1)
    .split('-')
    .pop()!;
  return /^[0-9a-f]{64}$/.test(h) ? h : undefined;
}

export async function repairTarget(
  repo: Repository,
  to: ObjectStore,
  sources: readonly ObjectStore[],
  opts: RepairOptions,
): Promise<RepairResult> {
  if (!repo.access.worker && !repo.access.restore)
    throw new KeyError('repair needs the worker key or the restore identity (to read index objects)');
  const result: RepairResult = { target: to.name, copied: [], unrepairable: [], bytes: 0 };
  const listing = async (s: ObjectStore, prefixes: string[]) => {
    const m = new Map<string, number>();
    for (const p of prefixes) for await (const o of s.list(p)) m.set(o.key, o.size);
    return m;
  };
  const have = await listing(to, [...META, 'data/', 'tree/', 'config']);
  const others = await Promise.all(
    sources.map(async (s) => ({ s, keys: await listing(s, [...META, 'data/', 'tree/', 'config']) })),
  );

  /** Copies `key` from the first source where `verify` accepts it. */
  const fetchGood = async (
    key: string,
    verify: (b: Buffer) => boolean,
  ): Promise<{ bytes: Buffer; from: string } | undefined> => {
    for (const { s, keys } of others) {
      if (!keys.has(key)) continue;
      try {
        const b = await s.getBuffer(key);
        if (verify(b)) return { bytes: b, from: s.name };
      } catch (err) {
        if (!(err instanceof RegbackupError)) throw err;
      }
    }
    return undefined;
  };
  // Read after the listings: an object deleted on purpose (prune, forget) while they were taken is recorded
  // by then, and is never copied back from a target where its deletion had not happened yet.
  let deleted = deletedKeys(await loadMarks(repo, sources[0] ?? to));
  const goneSinceListed = async (key: string): Promise<boolean> => {
    deleted = deletedKeys(await loadMarks(repo, sources[0] ?? to));
    if (deleted.has(key)) return true;
    for (const s of [to, ...sources]) if (await s.stat(key)) return false;
    return true;
  };
  const fix = async (key: string, reason: 'missing' | 'corrupt', verify: (b: Buffer) => boolean) => {
    if (deleted.has(key)) return;
    const good = await fetchGood(key, verify);
    if (!good) {
      // Listed, but deleted everywhere since (by a prune or forget running meanwhile): nothing to repair.
      if (reason === 'missing' && (await goneSinceListed(key))) return;
      result.unrepairable.push({ key, reason: `${reason} here, and no other target holds it intact` });
      return;
    }
    if (!opts.dryRun) {
      // Replace: objects are written create-only (GCS refuses to overwrite), so the damaged one goes first.
      if (reason === 'corrupt') await to.delete(key);
      await to.put(
        key,
        good.bytes,
        withRetention(undefined, isLockedKind(key) ? opts.retentionDays : undefined),
      );
    }
    result.copied.push({ key, from: good.from, reason });
    result.bytes += good.bytes.length;
  };

  // The config: byte-identical on every target.
  const configs = await Promise.all(
    others.filter((o) => o.keys.has('config')).map((o) => o.s.getBuffer('config')),
  );
  const goodConfig = configs[0];
  if (goodConfig) {
    let mine: Buffer | undefined;
    try {
      mine = have.has('config') ? await to.getBuffer('config') : undefined;
    } catch {
      mine = undefined;
    }
    if (!mine || !mine.equals(goodConfig))
      await fix('config', mine ? 'corrupt' : 'missing', (b) => b.equals(goodConfig));
  }

  // Metadata objects: named by their hash.
  const allMeta = new Set<string>();
  for (const { keys } of others)
    for (const k of keys.keys()) if (META.some((p) => k.startsWith(p))) allMeta.add(k);
  for (const k of have.keys()) if (META.some((p) => k.startsWith(p))) allMeta.add(k);
  for (const key of allMeta) {
    const want = nameHash(key);
    if (!want) continue;
    const ok = (b: Buffer) => sha256Hex(b) === want;
    if (!have.has(key)) {
      await fix(key, 'missing', ok);
      continue;
    }
    let mine: Buffer | undefined;
    let vanished = false;
    try {
      mine = await to.getBuffer(key);
    } catch (err) {
      if (!(err instanceof RegbackupError)) throw err;
      vanished = err instanceof ObjectNotFoundError;
    }
    if (!mine || !ok(mine)) await fix(key, vanished ? 'missing' : 'corrupt', ok);
  }

  // Packs: what the index objects (now intact here) record.
  for (const ikey of [...allMeta].filter((k) => k.startsWith(META_PREFIX.index))) {
    let packs;
    try {
      packs = decodeIndexBody(
        await repo.readMeta(
          'index',
          ikey,
          opts.dryRun ? (others.find((o) => o.keys.has(ikey))?.s ?? to) : to,
        ),
        ikey,
      );
    } catch (err) {
      if (!(err instanceof RegbackupError)) throw err;
      if (err instanceof ObjectNotFoundError && (await goneSinceListed(ikey))) continue;
      result.unrepairable.push({ key: ikey, reason: `index object cannot be read: ${err.message}` });
      continue;
    }
    for (const { info } of packs) {
      const key = packKey(info.type, info.id);
      const ok = (b: Buffer) => b.length === info.size && sha256Hex(b) === info.sha256;
      const size = have.get(key);
      if (size === undefined) await fix(key, 'missing', ok);
      else if (size !== info.size) await fix(key, 'corrupt', ok);
      else if (opts.readData) {
        let mine: Buffer | undefined;
        try {
          mine = await to.getBuffer(key);
        } catch (err) {
          if (!(err instanceof RegbackupError)) throw err;
        }
        if (!mine || !ok(mine)) await fix(key, 'corrupt', ok);
      }
    }
  }
  opts.logger.info(
    { target: to.name, copied: result.copied.length, unrepairable: result.unrepairable.length },
    'repair finished',
  );
  return result;
}
