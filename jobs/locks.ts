import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import type { Config } from '../src/config/schema.js';
import { systemCodeOf } from '../src/errors.js';
import { defaultCacheRoot } from '../src/repo/repository.js';
import { processAlive } from '../src/util/process.js';

/** How long a run's locks live unless renewed (whoever holds them renews every third of it). */
export const LOCK_TTL = 10 * 60_000;

/** The lock keys of a backup of these sources. */
export function sourceLockKeys(names: readonly string[]): string[] {
  return names.map((n) => `source:${n}`);
}

/**
 * The lock service the worker uses for this configuration — Redis with `queue.redis`, else files in the
 * cache directory — for a process that is not the worker (a backup run by hand). Redis must answer within
 * `pingMs`, else this throws (the caller decides whether to go on without locks).
 */
export async function openLocks(
  config: Config,
  pingMs = 5000,
): Promise<{ locks: LockService; close(): Promise<void> }> {
  if (!config.queue)
    return { locks: new FileLocks(config.cache ?? defaultCacheRoot()), close: async () => {} };
  // Loaded only with a queue: a backup by hand without one does not load the Redis client.
  const { connectRedisChecked } = await import('../src/health/state.js');
  const redis = await connectRedisChecked(config.queue.redis, pingMs);
  const close = async () => {
    redis.disconnect();
  };
  return { locks: new RedisLocks(redis, config.queue.prefix), close };
}

/**
 * Locks that keep two runs of a job for the same source from overlapping, across processes and hosts. A
 * lock has an owner (a backup run's ID, a job's ID) and a time to live: whoever works for the owner renews
 * it; if every worker of the run dies, it expires. Several keys are taken all or nothing.
 */
export interface LockService {
  /** Takes every key for `owner` (keys it already holds included), or none; true when taken. */
  acquire(keys: string[], owner: string, ttlMs: number): Promise<boolean>;
  /** Extends the keys held by `owner`, and takes back those that expired meanwhile; false when another holds one. */
  renew(keys: string[], owner: string, ttlMs: number): Promise<boolean>;
  release(keys: string[], owner: string): Promise<void>;
  /** Every lock held now: key → owner. */
  held(): Promise<Record<string, string>>;
}

/** Locks of one process. */
/** Renews `owner`'s hold on `keys` for LOCK_TTL once; `onLost` when another owner holds one now (it expired). */
export async function renewLease(
  locks: LockService,
  keys: string[],
  owner: string,
  onLost: () => void,
): Promise<void> {
  if (!(await locks.renew(keys, owner, LOCK_TTL))) onLost();
}

/**
 * Renews the lease every third of LOCK_TTL while its holder works, until the returned function is called. A
 * lost lock goes to `onLost`, a failed renewal to `onFailed`: the holder logs them and carries on (data stays
 * safe, writers never coordinate through locks).
 */
export function keepRenewing(
  locks: LockService,
  keys: string[],
  owner: string,
  onLost: () => void,
  onFailed: (err: unknown) => void,
): () => void {
  const timer = setInterval(() => void renewLease(locks, keys, owner, onLost).catch(onFailed), LOCK_TTL / 3);
  timer.unref();
  return () => clearInterval(timer);
}

export class MemoryLocks implements LockService {
  private readonly locks = new Map<string, { owner: string; until: number }>();

  private live(key: string): { owner: string; until: number } | undefined {
    const l = this.locks.get(key);
    if (l && l.until < Date.now()) {
      this.locks.delete(key);
      return undefined;
    }
    return l;
  }

  async acquire(keys: string[], owner: string, ttlMs: number): Promise<boolean> {
    if (
      keys.some((k) => {
        const l = this.live(k);
        return l !== undefined && l.owner !== owner;
      })
    )
      return false;
    for (const k of keys) this.locks.set(k, { owner, until: Date.now() + ttlMs });
    return true;
  }

  renew(keys: string[], owner: string, ttlMs: number): Promise<boolean> {
    return this.acquire(keys, owner, ttlMs);
  }

  async release(keys: string[], owner: string): Promise<void> {
    for (const k of keys) if (this.live(k)?.owner === owner) this.locks.delete(k);
  }

  async held(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const k of [...this.locks.keys()]) {
      const l = this.live(k);
      if (l) out[k] = l.owner;
    }
    return out;
  }
}

const ACQUIRE = `
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v and v ~= ARGV[1] then return 0 end
end
for i, k in ipairs(KEYS) do redis.call('SET', k, ARGV[1], 'PX', ARGV[2]) end
return 1`;

const RELEASE = `
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
end
return 1`;

/** Locks in Redis (Lua scripts: all-or-nothing, compare-and-delete), shared by every worker. */
export class RedisLocks implements LockService {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  private keys(keys: string[]): string[] {
    return keys.map((k) => `${this.prefix}:lock:${k}`);
  }

  async acquire(keys: string[], owner: string, ttlMs: number): Promise<boolean> {
    if (!keys.length) return true;
    const r = await this.redis.eval(
      ACQUIRE,
      keys.length,
      ...this.keys(keys),
      owner,
      String(Math.ceil(ttlMs)),
    );
    return r === 1;
  }

  renew(keys: string[], owner: string, ttlMs: number): Promise<boolean> {
    return this.acquire(keys, owner, ttlMs);
  }

  async release(keys: string[], owner: string): Promise<void> {
    if (keys.length) await this.redis.eval(RELEASE, keys.length, ...this.keys(keys), owner);
  }

  async held(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    const pattern = `${this.prefix}:lock:*`;
    let cursor = '0';
    do {
      const [next, found] = await this.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 100);
      cursor = next;
      for (const k of found) {
        const v = await this.redis.get(k);
        if (v) out[k.slice(`${this.prefix}:lock:`.length)] = v;
      }
    } while (cursor !== '0');
    return out;
  }
}

interface LockFile {
  owner: string;
  until: number;
  pid: number;
  host: string;
}

/**
 * Locks as files in the cache directory (`<cache>/locks/<key>.lock`), for the in-process worker and the CLI
 * on the same host: `regbackup jobs run backup` and the worker's scheduled backup never overlap either. A
 * lock file is created exclusively; one that expired, or whose process is gone, is taken over (renamed
 * away first, so that two processes cannot both take it over).
 */
export class FileLocks implements LockService {
  private readonly dir: string;

  constructor(cacheRoot: string) {
    this.dir = path.join(cacheRoot, 'locks');
  }

  private file(key: string): string {
    return path.join(this.dir, `${encodeURIComponent(key)}.lock`);
  }

  private read(key: string): LockFile | undefined {
    try {
      return JSON.parse(readFileSync(this.file(key), 'utf8')) as LockFile;
    } catch (err) {
      if (systemCodeOf(err) === 'ENOENT') return undefined;
      // Half written by a process that died: stale.
      return { owner: '', until: 0, pid: 0, host: os.hostname() };
    }
  }

  private stale(l: LockFile): boolean {
    return (
      l.until < Date.now() || (l.host === os.hostname() && l.pid !== process.pid && !processAlive(l.pid))
    );
  }

  private takeOne(key: string, owner: string, ttlMs: number): boolean {
    mkdirSync(this.dir, { recursive: true });
    const body = JSON.stringify({
      owner,
      until: Date.now() + ttlMs,
      pid: process.pid,
      host: os.hostname(),
    } satisfies LockFile);
    for (let attempt = 0; attempt < 3; attempt++) {
      const cur = this.read(key);
      if (cur && cur.owner === owner) {
        const tmp = `${this.file(key)}.${randomBytes(4).toString('hex')}.tmp`;
        writeFileSync(tmp, body);
        renameSync(tmp, this.file(key));
        return true;
      }
      if (cur && !this.stale(cur)) return false;
      if (cur) {
        try {
          renameSync(this.file(key), `${this.file(key)}.${randomBytes(4).toString('hex')}.stale`);
        } catch (err) {
          if (systemCodeOf(err) !== 'ENOENT') throw err;
          continue; // another process took it over first
        }
      }
      try {
        writeFileSync(this.file(key), body, { flag: 'wx' });
        this.sweep(key);
        return true;
      } catch (err) {
        if (systemCodeOf(err) !== 'EEXIST') throw err;
      }
    }
    return false;
  }

  /** Removes the renamed-away stale files of a key. */
  private sweep(key: string): void {
    const base = `${encodeURIComponent(key)}.lock.`;
    try {
      for (const f of readdirSync(this.dir))
        if (f.startsWith(base) && f.endsWith('.stale')) rmSync(path.join(this.dir, f), { force: true });
    } catch (err) {
      if (systemCodeOf(err) !== 'ENOENT') throw err;
    }
  }

  async acquire(keys: string[], owner: string, ttlMs: number): Promise<boolean> {
    const taken: string[] = [];
    for (const k of keys) {
      const before = this.read(k);
      if (!this.takeOne(k, owner, ttlMs)) {
        for (const t of taken) this.releaseOne(t, owner);
        return false;
      }
      if (!before || before.owner !== owner) taken.push(k);
    }
    return true;
  }

  renew(keys: string[], owner: string, ttlMs: number): Promise<boolean> {
    return this.acquire(keys, owner, ttlMs);
  }

  private releaseOne(key: string, owner: string): void {
    if (this.read(key)?.owner === owner) rmSync(this.file(key), { force: true });
  }

  async release(keys: string[], owner: string): Promise<void> {
    for (const k of keys) this.releaseOne(k, owner);
  }

  async held(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if (systemCodeOf(err) === 'ENOENT') return out;
      throw err;
    }
    for (const f of names) {
      if (!f.endsWith('.lock')) continue;
      const key = decodeURIComponent(f.slice(0, -'.lock'.length));
      const l = this.read(key);
      if (l && !this.stale(l)) out[key] = l.owner;
    }
    return out;
  }
}
