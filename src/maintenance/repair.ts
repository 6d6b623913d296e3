import pLimit from 'p-limit';
import { IntegrityError, KeyError, RegbackupError } from '../errors.js';
import type { Logger } from '../log.js';
import type { IndexedPack } from '../repo/index-object.js';
import { packKey } from '../repo/pack.js';
import { META_PREFIX, type Repository } from '../repo/repository.js';
import { decodeSigned } from '../repo/signed.js';
import { verifiedMeta, verifiedPack, type BadObject } from '../repo/sync.js';
import { ObjectNotFoundError, type ObjectStore } from '../store/types.js';
import { deletedKeys, loadMarks } from './marks.js';
import { isLockedKind, withRetention } from '../repo/fanout.js';

/**
 * `regbackup repair`: makes a target hold every object, intact, by copying from targets where the object
 * verifies — ciphertext as it is (every target holds the same bytes). Every object is verified as its
 * readers verify it, on the repaired target and on the target it is copied from: metadata objects (index
 * objects, snapshots, drill reports, marks) by their name's SHA-256, decryption with our identity, magic and
 * signature; packs by the size and SHA-256 a verified index object records (the hash needs the pack
 * downloaded: `readData` checks it on the repaired side; the copied side is always checked); the config by
 * its signature and repository ID. Whatever is missing, corrupt, garbage or forged here is replaced.
 */
export interface RepairOptions {
  logger: Logger;
  /** Also download and hash every pack of the damaged target (finds same-size corruption). */
  readData?: boolean;
  dryRun?: boolean;
  /** Days the repaired target locks objects (S3 Object Lock / GCS retention): copies are locked too. */
  retentionDays?: number;
  concurrency?: number;
}

export interface RepairResult {
  target: string;
  copied: { key: string; from: string; reason: 'missing' | 'corrupt'; why?: string }[];
  /** Objects bad or missing here that no other target holds intact (or that cannot be replaced here). */
  unrepairable: { key: string; reason: string }[];
  /** Bad copies seen on the targets copied from (never copied; `repair --to <that target>` replaces them). */
  elsewhere: BadObject[];
  bytes: number;
}

const META = [META_PREFIX.index, META_PREFIX.snapshot, META_PREFIX.drill, META_PREFIX.mark];
const isMeta = (k: string) => META.some((p) => k.startsWith(p));

export async function repairTarget(
  repo: Repository,
  to: ObjectStore,
  sources: readonly ObjectStore[],
  opts: RepairOptions,
): Promise<RepairResult> {
  if (!repo.access.worker && !repo.access.restore)
    throw new KeyError('repair needs the worker key or the restore identity (to read index objects)');
  const result: RepairResult = { target: to.name, copied: [], unrepairable: [], elsewhere: [], bytes: 0 };
  const limit = pLimit(opts.concurrency ?? 4);
  const listing = async (s: ObjectStore) => {
    const m = new Map<string, number>();
    for (const p of [...META, 'data/', 'tree/', 'config'])
      for await (const o of s.list(p)) m.set(o.key, o.size);
    return m;
  };
  const have = await listing(to);
  const others = await Promise.all(sources.map(async (s) => ({ s, keys: await listing(s) })));
  // Read after the listings: an object deleted on purpose (prune, forget) while they were taken is recorded
  // by then, and is never copied back from a target where its deletion had not happened yet.
  let deleted = deletedKeys(await loadMarks(repo, sources[0] ?? to));
  /** Listed, but deleted everywhere since (a prune or forget running meanwhile): nothing to repair. */
  const goneSinceListed = async (key: string): Promise<boolean> => {
    deleted = deletedKeys(await loadMarks(repo, sources[0] ?? to));
    if (deleted.has(key)) return true;
    for (const s of [to, ...sources]) if (await s.stat(key)) return false;
    return true;
  };

  /**
   * The bytes of `key` from the first source where `verify` accepts them; bad copies go to `elsewhere`. A
   * copy that was listed and is gone when read counts as bad only if the object was not deleted on purpose
   * meanwhile (a forget or prune running beside this repair deletes it from every target).
   */
  const fetchGood = async (key: string, verify: (s: ObjectStore) => Promise<Buffer>) => {
    const vanished: RepairResult['elsewhere'] = [];
    for (const { s, keys } of others) {
      if (!keys.has(key)) continue;
      try {
        const bytes = await verify(s);
        // Found intact here: a copy gone from an earlier source is damage there, unless deleted on purpose.
        if (vanished.length > 0) {
          deleted = deletedKeys(await loadMarks(repo, sources[0] ?? to));
          if (!deleted.has(key)) result.elsewhere.push(...vanished);
        }
        return { bytes, from: s.name };
      } catch (err) {
        if (!(err instanceof RegbackupError)) throw err;
        const bad = { key, from: s.name, reason: err.message };
        if (err instanceof ObjectNotFoundError) vanished.push(bad);
        else result.elsewhere.push(bad);
      }
    }
    if (vanished.length > 0 && !(await goneSinceListed(key))) result.elsewhere.push(...vanished);
    return undefined;
  };
  /** Replaces (or adds) `key` here with `bytes` from `from`. */
  const replace = async (
    key: string,
    bytes: Buffer,
    from: string,
    reason: 'missing' | 'corrupt',
    why?: string,
  ) => {
    if (!opts.dryRun) {
      try {
        // Objects are written create-only (GCS refuses to overwrite): the damaged one goes first.
        if (reason === 'corrupt') await to.delete(key);
        await to.put(
          key,
          bytes,
          withRetention(undefined, isLockedKind(key) ? opts.retentionDays : undefined),
        );
      } catch (err) {
        if (!(err instanceof RegbackupError)) throw err;
        result.unrepairable.push({
          key,
          reason: `${why ?? reason} here, and it cannot be replaced: ${err.message}`,
        });
        return;
      }
    }
    result.copied.push({ key, from, reason, ...(why ? { why } : {}) });
    result.bytes += bytes.length;
  };
  /**
   * Checks `key` here with `verify`; when it is missing or fails, copies it from a source where it verifies.
   * Returns what `verify` found on the copy in use, or undefined when there is none. `required`: the
   * repository needs the object (a pack an index object names, the config), so missing everywhere is
   * unrepairable; a metadata object missing here and bad wherever it is, is no object of this repository.
   */
  const ensure = async <T>(
    key: string,
    verify: (s: ObjectStore) => Promise<{ bytes: Buffer; found: T }>,
    required = false,
  ) => {
    if (deleted.has(key)) return undefined;
    let why: string | undefined;
    if (have.has(key)) {
      try {
        return (await verify(to)).found;
      } catch (err) {
        if (!(err instanceof RegbackupError)) throw err;
        if (!(err instanceof ObjectNotFoundError)) why = err.message;
      }
    }
    let found: T | undefined;
    const good = await fetchGood(key, async (s) => {
      const v = await verify(s);
      found = v.found;
      return v.bytes;
    });
    if (good) {
      await replace(key, good.bytes, good.from, why ? 'corrupt' : 'missing', why);
      return found;
    }
    if (!why && (await goneSinceListed(key))) return undefined;
    // Missing here and bad wherever it is: nothing this target should hold (the bad copies are in `elsewhere`).
    if (why || required)
      result.unrepairable.push({ key, reason: `${why ?? 'missing here'}; no other target holds it intact` });
    return undefined;
  };

  // The config: the same signed object on every target.
  if (others.some((o) => o.keys.has('config'))) {
    await ensure(
      'config',
      async (s) => {
        const bytes = await s.getBuffer('config');
        const body = decodeSigned('config', bytes, repo.verifyKey, `config on ${s.name}`);
        let id: unknown;
        try {
          id = (JSON.parse(body.toString('utf8')) as { id?: unknown }).id;
        } catch {
          throw new IntegrityError(`config on ${s.name} is not JSON`);
        }
        if (id !== repo.config.id)
          throw new IntegrityError(
            `config on ${s.name} is of repository ${String(id)}, not ${repo.config.id}`,
          );
        return { bytes, found: true };
      },
      true,
    );
  }

  // Metadata objects: verified as their readers verify them; index objects say what the packs must be.
  const allMeta = new Set<string>([...have.keys()].filter(isMeta));
  for (const { keys } of others) for (const k of keys.keys()) if (isMeta(k)) allMeta.add(k);
  const packs = new Map<string, IndexedPack['info']>();
  await Promise.all(
    [...allMeta].map((key) =>
      limit(async () => {
        const found = await ensure(key, async (s) => {
          const v = await verifiedMeta(repo, key, s);
          return { bytes: v.bytes, found: v.packs ?? [] };
        });
        for (const p of found ?? []) packs.set(packKey(p.info.type, p.info.id), p.info);
      }),
    ),
  );

  // Packs: present, of the recorded size, and (readData) of the recorded hash.
  await Promise.all(
    [...packs].map(([key, info]) =>
      limit(async () => {
        const size = have.get(key);
        const check = async (s: ObjectStore) => ({ bytes: await verifiedPack(key, s, info), found: true });
        if (size === info.size && !opts.readData) return;
        if (size !== undefined && size !== info.size) {
          // Known bad without reading it.
          const good = await fetchGood(key, (s) => verifiedPack(key, s, info));
          const why = `pack ${key} is ${size} bytes, its index says ${info.size}`;
          if (good) await replace(key, good.bytes, good.from, 'corrupt', why);
          else result.unrepairable.push({ key, reason: `${why}; no other target holds it intact` });
          return;
        }
        await ensure(key, check, true);
      }),
    ),
  );
  opts.logger.info(
    {
      target: to.name,
      copied: result.copied.length,
      unrepairable: result.unrepairable.length,
      elsewhere: result.elsewhere.length,
    },
    'repair finished',
  );
  return result;
}
