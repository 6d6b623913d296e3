import { randomBytes, type KeyObject } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import pLimit from 'p-limit';
import { IntegrityError, KeyError, messageOf, RegbackupError, TargetError, UsageError } from '../errors.js';
import { log } from '../log.js';
import { ObjectNotFoundError, type ObjectStore } from '../store/types.js';
import { decrypt, encrypt, Identities } from './age.js';
import { BlobIndex } from './blob-index.js';
import { gearTable, validateChunkerParams, type ChunkerParams } from './chunker.js';
import { decodeIndexBody } from './index-object.js';
import { repositoryParamsProblem } from './limits.js';
import { deriveKeys, type RestoreIdentity, type WorkerKey } from './keys.js';
import { decodeSigned, encodeSigned, sha256Hex, type MagicName } from './signed.js';

/** The repository's parameters, stored (signed, not encrypted) in the `config` object of every target. */
export interface RepoConfig {
  version: 1;
  /** 32 hex characters, random. */
  id: string;
  created: string;
  /** The key set that writes this repository (see keys.ts). */
  keyId: string;
  recipients: string[];
  metadataRecipient: string;
  packSize: number;
  compressionLevel: number;
  chunkers: { json: ChunkerParams; bulk: ChunkerParams; tree: ChunkerParams };
}

/** Metadata fallbacks logged one by one (the rest are counted). */
const MAX_LOGGED_FALLBACKS = 20;

export const DEFAULT_CHUNKERS: RepoConfig['chunkers'] = {
  // Packuments and listings: JSON that changes by insertions; ~32 KiB chunks keep edits local and still
  // compress well (zstd on 32 KiB of packument JSON: ~8x).
  json: { kind: 'cdc', min: 8 * 1024, avg: 32 * 1024, max: 128 * 1024 },
  // Listings (JSON lines, ~250 bytes per document): cuts moved to the end of a line, so that every chunk holds
  // whole entries and an unchanged chunk means unchanged entries. Smaller than for documents: a day's changes
  // are spread over the whole ID space, and 1,000 changed documents in a 100k-document listing dirtied ~73 %
  // of its 32 KiB chunks (the incremental stored the whole 25 MiB listing again); at 4 KiB, ~15 %.
  tree: { kind: 'cdc', min: 1024, avg: 4 * 1024, max: 16 * 1024, snap: 0x0a },
  // Tarballs and attachments: gzip'd and immutable; fixed 1 MiB pieces (most tarballs are one piece, and
  // a writer holds at most one piece per file in memory).
  bulk: { kind: 'fixed', size: 1024 * 1024 },
};

/** Where each kind of metadata object lives. */
export const META_PREFIX: Record<Exclude<MagicName, 'config'>, string> = {
  snapshot: 'snapshots/',
  index: 'index/',
  drill: 'drills/',
  mark: 'marks/',
};

export interface Access {
  /** The worker key: write, read metadata. */
  worker?: WorkerKey;
  /** The restore identity: read everything. */
  restore?: RestoreIdentity;
}

export interface OpenOptions {
  /** Cache root; the repository's cache lives in `<cacheRoot>/<repository id>`. */
  cacheRoot?: string;
  /** Memory budget of the blob index (bytes). */
  indexMemory?: number;
}

export function defaultCacheRoot(): string {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'regbackup');
}

function encodeConfig(c: RepoConfig, signingKey: KeyObject): Buffer {
  return encodeSigned('config', Buffer.from(JSON.stringify(c, null, 2) + '\n'), signingKey, false);
}

/** Reads the key ID of a config object without trusting it (for messages only). */
function peekConfig(bytes: Buffer): Partial<RepoConfig> | undefined {
  try {
    if (bytes.length > 1024 * 1024) return undefined;
    return JSON.parse(bytes.subarray(13, bytes.length - 64).toString('utf8')) as Partial<RepoConfig>;
  } catch {
    return undefined;
  }
}

function decodeConfig(bytes: Buffer, verifyKey: KeyObject, keyId: string, where: string): RepoConfig {
  if (bytes.length > 1024 * 1024) throw new IntegrityError(`${where}: config object is too large`);
  const peek = peekConfig(bytes);
  if (peek?.keyId && peek.keyId !== keyId) {
    throw new KeyError(
      `${where} holds repository ${peek.id ?? '?'} written with key ${peek.keyId}, but the key given is ${keyId}`,
    );
  }
  const body = decodeSigned('config', bytes, verifyKey, `${where}: config`);
  let c: RepoConfig;
  try {
    c = JSON.parse(body.toString('utf8')) as RepoConfig;
  } catch {
    throw new IntegrityError(`${where}: config is not JSON`);
  }
  if (c.version !== 1)
    throw new IntegrityError(`${where}: repository format version ${String(c.version)} is not supported`);
  if (!/^[0-9a-f]{32}$/.test(c.id)) throw new IntegrityError(`${where}: config has a bad repository id`);
  if (!c.chunkers?.json || !c.chunkers.bulk || !c.chunkers.tree)
    throw new IntegrityError(`${where}: config lacks chunker parameters`);
  validateChunkerParams(c.chunkers.json);
  validateChunkerParams(c.chunkers.bulk);
  validateChunkerParams(c.chunkers.tree);
  const bad = repositoryParamsProblem(c);
  if (bad) throw new IntegrityError(`${where}: config has a bad ${bad}`);
  return c;
}

/** A metadata object read from another target because the first one tried could not serve it intact. */
export interface MetadataFallback {
  object: string;
  from: string;
  to: string;
  reason: string;
}

export interface InitResult {
  target: string;
  status: 'created' | 'exists' | 'copied';
}

export class Repository {
  readonly idKey: Buffer;
  readonly gear: Int32Array;
  readonly identities?: Identities;
  /** Metadata objects (index objects, snapshots) read from another target than the first one tried. */
  readonly fallbacks: MetadataFallback[] = [];
  /** Index objects bad on every target that holds them (name -> why), left out of the index. */
  readonly unreadableIndex = new Map<string, string>();
  private index?: BlobIndex;

  private constructor(
    readonly config: RepoConfig,
    readonly targets: ObjectStore[],
    readonly access: Access,
    readonly cacheDir: string,
    private readonly opts: OpenOptions,
  ) {
    const secret = access.worker?.repositorySecret ?? access.restore?.repositorySecret;
    if (!secret) throw new KeyError('no key given');
    const d = deriveKeys(secret);
    this.idKey = d.idKey;
    this.gear = gearTable(d.chunkerKey);
    const ids: string[] = [];
    if (access.restore) ids.push(access.restore.identity);
    if (access.worker) ids.push(access.worker.metadataIdentity);
    if (ids.length) this.identities = new Identities(ids);
  }

  get verifyKey(): KeyObject {
    return (this.access.worker?.verifyKey ?? this.access.restore?.verifyKey)!;
  }

  get keyId(): string {
    return (this.access.worker?.keyId ?? this.access.restore?.keyId)!;
  }

  /** Creates the repository on every target that lacks it; harmless when it exists; refuses a foreign one. */
  static async init(
    targets: ObjectStore[],
    worker: WorkerKey,
    params: { packSize: number; compressionLevel: number },
  ): Promise<InitResult[]> {
    const bad = repositoryParamsProblem(params);
    if (bad) throw new UsageError(`cannot create a repository with ${bad}`);
    const found = await Promise.all(
      targets.map(async (t) => {
        try {
          return { t, bytes: await t.getBuffer('config') };
        } catch (err) {
          if (err instanceof ObjectNotFoundError) return { t, bytes: undefined };
          throw err;
        }
      }),
    );
    let existing: { config: RepoConfig; bytes: Buffer } | undefined;
    for (const f of found) {
      if (!f.bytes) continue;
      const c = decodeConfig(f.bytes, worker.verifyKey, worker.keyId, `target ${f.t.name}`);
      if (existing && existing.config.id !== c.id) {
        throw new UsageError(
          `targets hold different repositories (${existing.config.id} and ${c.id} on ${f.t.name}); every target must hold the same one`,
        );
      }
      existing ??= { config: c, bytes: f.bytes };
    }
    for (const f of found) {
      if (f.bytes) continue;
      for await (const o of f.t.list('')) {
        throw new UsageError(
          `target ${f.t.name} (${f.t.location}) is not empty and holds no regbackup repository (found ${o.key}); refusing to write into it`,
        );
      }
    }
    let bytes = existing?.bytes;
    if (!bytes) {
      const config: RepoConfig = {
        version: 1,
        id: randomBytes(16).toString('hex'),
        created: new Date().toISOString(),
        keyId: worker.keyId,
        recipients: worker.recipients,
        metadataRecipient: worker.metadataRecipient,
        packSize: params.packSize,
        compressionLevel: params.compressionLevel,
        chunkers: DEFAULT_CHUNKERS,
      };
      bytes = encodeConfig(config, worker.signingKey);
    }
    const results: InitResult[] = [];
    for (const f of found) {
      if (f.bytes) {
        results.push({ target: f.t.name, status: 'exists' });
        continue;
      }
      await f.t.put('config', bytes, { contentType: 'application/octet-stream' });
      results.push({ target: f.t.name, status: existing ? 'copied' : 'created' });
    }
    return results;
  }

  /**
   * Opens the repository held by `targets`. Targets that do not answer are left out (and named in the
   * log); targets holding another repository are an error.
   */
  static async open(
    targets: ObjectStore[],
    access: Access,
    opts: OpenOptions = {},
  ): Promise<{ repo: Repository; unreachable: { target: string; error: Error }[] }> {
    const verifyKey = access.worker?.verifyKey ?? access.restore?.verifyKey;
    const keyId = access.worker?.keyId ?? access.restore?.keyId;
    if (!verifyKey || !keyId)
      throw new KeyError('opening a repository needs the worker key or the restore identity');
    const unreachable: { target: string; error: Error }[] = [];
    const ok: { t: ObjectStore; c: RepoConfig }[] = [];
    const bad: { target: string; error: RegbackupError }[] = [];
    await Promise.all(
      targets.map(async (t) => {
        let bytes: Buffer;
        try {
          bytes = await t.getBuffer('config');
        } catch (err) {
          if (err instanceof ObjectNotFoundError) {
            unreachable.push({
              target: t.name,
              error: new UsageError(
                `target ${t.name} (${t.location}) holds no repository: run \`regbackup init\``,
              ),
            });
          } else unreachable.push({ target: t.name, error: err as Error });
          return;
        }
        try {
          ok.push({ t, c: decodeConfig(bytes, verifyKey, keyId, `target ${t.name}`) });
        } catch (err) {
          if (!(err instanceof RegbackupError)) throw err;
          bad.push({ target: t.name, error: err });
        }
      }),
    );
    // A config that does not verify on one target (damage, or a forgery) leaves that target out, named;
    // when none verifies, that is the error (a wrong key says so on every target).
    if (ok.length === 0 && bad.length) throw bad[0]!.error;
    unreachable.push(...bad);
    if (ok.length === 0) {
      const why = unreachable.map((u) => `${u.target}: ${u.error.message}`).join('; ');
      throw new TargetError(`no target can be read (${why})`, {
        unreachable: unreachable.map((u) => u.target),
      });
    }
    const first = ok[0]!.c;
    for (const o of ok) {
      if (o.c.id !== first.id) {
        throw new UsageError(
          `targets hold different repositories (${first.id} on ${ok[0]!.t.name}, ${o.c.id} on ${o.t.name})`,
        );
      }
    }
    // Keep the configured order of targets.
    const live = targets.filter((t) => ok.some((o) => o.t === t));
    const cacheDir = path.join(opts.cacheRoot ?? defaultCacheRoot(), first.id);
    return { repo: new Repository(first, live, access, cacheDir, opts), unreachable };
  }

  /** Signs, encrypts (to the restore recipients and the metadata recipient) and names a metadata object. */
  async sealMeta(
    kind: Exclude<MagicName, 'config'>,
    body: Buffer,
    namePrefix = '',
  ): Promise<{ key: string; bytes: Buffer; hash: string }> {
    const worker = this.access.worker;
    if (!worker) throw new KeyError('writing needs the worker key');
    const signed = encodeSigned(kind, body, worker.signingKey);
    const bytes = await encrypt([...this.config.recipients, this.config.metadataRecipient], signed);
    const hash = sha256Hex(bytes);
    return { key: `${META_PREFIX[kind]}${namePrefix}${hash}`, bytes, hash };
  }

  /** Reads, checks the name (SHA-256), decrypts and verifies a metadata object. */
  async readMeta(kind: Exclude<MagicName, 'config'>, key: string, store: ObjectStore): Promise<Buffer> {
    if (!this.identities) throw new KeyError('reading metadata needs the worker key or the restore identity');
    const what = `${kind} ${key} on ${store.name}`;
    const bytes = await store.getBuffer(key);
    const hash = key
      .slice(key.lastIndexOf('/') + 1)
      .split('-')
      .pop()!;
    if (sha256Hex(bytes) !== hash)
      throw new IntegrityError(`${what}: content does not match its name (corrupt or swapped)`);
    let plain: Buffer;
    try {
      plain = await decrypt(this.identities, bytes);
    } catch (err) {
      if (err instanceof KeyError) throw new KeyError(`${what}: ${err.message}`);
      throw new IntegrityError(`${what}: ${(err as Error).message}`);
    }
    return decodeSigned(kind, plain, this.verifyKey, what);
  }

  /**
   * The blob index, brought up to date with the index objects on the targets. With the shared cache
   * (`index`, every run on this host) it is the repository's index: the union of the valid index objects
   * over every target, `prefer` read first; an index object missing or bad on one target is read from
   * another that holds it (recorded in `fallbacks`), one bad on every target is recorded in
   * `unreadableIndex` and left out (see updateIndex). Another cache name (prune's) holds the index objects
   * of `prefer` alone. Index objects already in the cache are not read again.
   */
  async loadIndex(prefer: ObjectStore = this.targets[0]!, cacheName = 'index'): Promise<BlobIndex> {
    const shared = cacheName === 'index';
    const idx = shared
      ? (this.index ??= BlobIndex.open(path.join(this.cacheDir, 'index'), {
          memoryBudget: this.opts.indexMemory,
        }))
      : BlobIndex.open(path.join(this.cacheDir, cacheName), { memoryBudget: this.opts.indexMemory });
    await this.updateIndex(idx, shared ? [prefer, ...this.targets.filter((t) => t !== prefer)] : prefer);
    return idx;
  }

  /**
   * Reads the index objects on `stores` that `idx` has not seen: each from the first store that lists it
   * and serves it intact (name = SHA-256, decrypts, signature valid), else from the next one that lists it.
   *
   * - An index object in the cache that no store lists any more was removed (a prune consolidated it, or it
   *   was deleted): the cache is rebuilt. One that only some stores lack is not a removal.
   * - A concurrent prune may consolidate index objects (write the new one, then delete the old) between the
   *   listing and the reads: an object gone from every store that listed it means listing again, a few
   *   times, never a half-loaded index.
   * - An object that is listed but bad on every store that holds it is named in the log and in
   *   `unreadableIndex`, and left out: the packs only it names are unknown to this index (a backup stores
   *   their blobs again; a reader that needs one of them says which index object it lacked). It never
   *   stops the load.
   */
  async updateIndex(idx: BlobIndex, from: ObjectStore | readonly ObjectStore[]): Promise<void> {
    const stores = Array.isArray(from) ? (from as readonly ObjectStore[]) : [from as ObjectStore];
    const where = stores.map((s) => s.name).join(', ');
    for (let attempt = 1; ; attempt++) {
      const { holders, answered } = await this.listIndexObjects(stores);
      if (answered.has(stores[0]!)) this.noteAbsentIndexObjects(holders, stores, idx);
      const removed = idx.indexObjects.filter((n) => !holders.has(n));
      if (removed.length) {
        log().info(
          { targets: where, removed: removed.length, example: removed[0] },
          'index objects in the local cache are on no target any more (a prune consolidated them, or they were deleted); rebuilding the local index cache',
        );
        idx.reset();
      }
      const known = new Set(idx.indexObjects);
      const todo = [...holders.keys()].filter((n) => !known.has(n));
      const limit = pLimit(8);
      let loaded = 0;
      const vanished: string[] = [];
      await Promise.all(
        todo.map((name) =>
          limit(async () => {
            if (vanished.length) return;
            const got = await this.readIndexObject(name, holders.get(name)!);
            if (got === 'vanished') {
              vanished.push(name);
              return;
            }
            if (!got) return;
            for (const p of got.packs) idx.addPack(p.info, p.entries);
            idx.markIndexObject(name);
            this.unreadableIndex.delete(name);
            loaded++;
          }),
        ),
      );
      if (loaded) {
        idx.persist();
        log().debug(
          { targets: where, loaded, packs: idx.packCount, blobs: idx.blobCount },
          'index cache updated',
        );
      }
      if (!vanished.length) return;
      if (attempt >= 5)
        throw new TargetError(
          `index object ${vanished[0]} was listed on ${holders
            .get(vanished[0]!)!
            .map((s) => s.name)
            .join(', ')} but is gone from each (index objects keep changing: is a prune running?)`,
        );
      log().info(
        { targets: where, object: vanished[0] },
        'an index object went away while loading, from every target that listed it (a prune consolidating index objects does that); listing again',
      );
    }
  }

  /**
   * An index object that the first of `stores` lacks but another holds: damage or a target that missed a
   * run (the next backup copies it there); read from the other, and said so (once per object and run).
   */
  private noteAbsentIndexObjects(
    holders: Map<string, ObjectStore[]>,
    stores: readonly ObjectStore[],
    idx: BlobIndex,
  ): void {
    const first = stores[0]!;
    if (stores.length < 2) return;
    const known = new Set(idx.indexObjects);
    const noted = new Set(this.fallbacks.map((f) => f.object));
    for (const [name, h] of holders) {
      if (h.includes(first) || known.has(name) || noted.has(name)) continue;
      this.noteFallback(name, first.name, h[0]!.name, `target ${first.name}: object ${name} does not exist`);
    }
  }

  /**
   * Every index object on `stores`, with the stores that list it (in the order given). A store whose listing
   * fails is left out, named in the log (its objects are read from the others; the cache may be rebuilt
   * needlessly, never kept stale); when every listing fails, that is the error.
   */
  private async listIndexObjects(
    stores: readonly ObjectStore[],
  ): Promise<{ holders: Map<string, ObjectStore[]>; answered: Set<ObjectStore> }> {
    const listed = await Promise.allSettled(
      stores.map(async (store) => {
        const names: string[] = [];
        for await (const o of store.list(META_PREFIX.index)) names.push(o.key);
        return { store, names };
      }),
    );
    const holders = new Map<string, ObjectStore[]>();
    const answered = new Set<ObjectStore>();
    listed.forEach((r, i) => {
      if (r.status === 'rejected') {
        log().warn(
          { target: stores[i]!.name, err: messageOf(r.reason) },
          `the index objects of target ${stores[i]!.name} cannot be listed; reading them from the others`,
        );
        return;
      }
      answered.add(r.value.store);
      for (const n of r.value.names) {
        const h = holders.get(n);
        if (h) h.push(r.value.store);
        else holders.set(n, [r.value.store]);
      }
    });
    if (!answered.size) throw (listed[0] as PromiseRejectedResult).reason;
    return { holders, answered };
  }

  /**
   * One index object, from the first of `holders` that serves it intact; each store passed over is
   * recorded as a fallback. 'vanished': gone from every holder (a prune may have consolidated it);
   * undefined: present but bad everywhere (recorded in `unreadableIndex`).
   */
  private async readIndexObject(
    name: string,
    holders: readonly ObjectStore[],
  ): Promise<{ packs: ReturnType<typeof decodeIndexBody> } | 'vanished' | undefined> {
    const failed: { store: ObjectStore; err: Error }[] = [];
    for (const store of holders) {
      try {
        const packs = decodeIndexBody(
          await this.readMeta('index', name, store),
          `index ${name} on ${store.name}`,
        );
        for (const f of failed) this.noteFallback(name, f.store.name, store.name, f.err.message);
        return { packs };
      } catch (err) {
        if (!(err instanceof RegbackupError)) throw err;
        failed.push({ store, err });
      }
    }
    if (failed.every((f) => f.err instanceof ObjectNotFoundError)) return 'vanished';
    const reason = failed
      .filter((f) => !(f.err instanceof ObjectNotFoundError))
      .map((f) => f.err.message)
      .join('; ');
    this.unreadableIndex.set(name, reason);
    log().error(
      { object: name, reason },
      'an index object cannot be read intact from any target: left out of the index (run `regbackup repair`; the blobs only it names are unknown to this run)',
    );
    return undefined;
  }

  /** The error for a blob the index lacks: names the index objects that could not be read, if any. */
  blobNotIndexed(id: Buffer): IntegrityError {
    const bad = [...this.unreadableIndex.keys()];
    return new IntegrityError(
      bad.length
        ? `blob ${id.toString('hex')} is not in the index: it is in no index object that could be read; ${bad.length === 1 ? 'this index object is' : 'these index objects are'} bad on every target that holds ${bad.length === 1 ? 'it' : 'them'}: ${bad.slice(0, 5).join(', ')}${bad.length > 5 ? ', …' : ''} (run \`regbackup repair\`)`
        : `blob ${id.toString('hex')} is not in the index (missing index object or pack)`,
      { blob: id.toString('hex'), ...(bad.length ? { unreadableIndex: bad } : {}) },
    );
  }

  /**
   * Records (and logs) that a metadata object was read from another target than the first one tried. The
   * first few are logged one by one (a new, empty target would otherwise log every index object), the rest
   * counted; all are kept for the report.
   */
  noteFallback(object: string, from: string, to: string, reason: string): void {
    this.fallbacks.push({ object, from, to, reason });
    const n = this.fallbacks.length;
    if (n <= MAX_LOGGED_FALLBACKS)
      log().warn({ object, from, to, reason }, `${object}: read from ${to} instead of ${from}`);
    else if (n === MAX_LOGGED_FALLBACKS + 1)
      log().warn(
        { from, to },
        `more than ${MAX_LOGGED_FALLBACKS} metadata objects read from another target: the rest are counted, not logged`,
      );
  }

  close(): void {
    this.index?.close();
  }
}
