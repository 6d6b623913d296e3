import type { Redis } from 'ioredis';

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

/** Locks of one process (the in-process worker). */
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
