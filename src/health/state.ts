import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Redis } from 'ioredis';
import type { Config } from '../config/schema.js';
import { messageOf, systemCodeOf, TargetError } from '../errors.js';
import { log } from '../log.js';
import { defaultCacheRoot } from '../repo/repository.js';

/**
 * What the worker remembers between jobs and processes: the outcome of the last run of each job, the last
 * drill of each target, the newest snapshot seen on each target, running jobs, recent failures, totals, and
 * the open alert incidents. Small JSON values under string keys.
 *
 * Two stores: a JSON file in the cache directory (one worker, or the CLI on the same host), and a Redis hash
 * (with `queue.redis`: every worker and `check-health` on any host see the same state). The operations that
 * decide who sends an alert (`setIfAbsent`, `delete`) are atomic in Redis, so several workers never raise
 * the same incident twice.
 */
export interface StateStore {
  readonly kind: 'file' | 'redis';
  get<T>(key: string): Promise<T | undefined>;
  set(key: string, value: unknown): Promise<void>;
  /** Sets only when absent; true when this call set it. */
  setIfAbsent(key: string, value: unknown): Promise<boolean>;
  /** True when the key existed (and this call removed it). */
  delete(key: string): Promise<boolean>;
  /** Every key starting with `prefix`, with its value. */
  entries<T>(prefix: string): Promise<[string, T][]>;
  /** Adds to numeric counters (created at 0). */
  incr(key: string, by: Record<string, number>): Promise<void>;
  counters(key: string): Promise<Record<string, number>>;
  /** Prepends to a bounded list (newest first). */
  push(key: string, value: unknown, max: number): Promise<void>;
  list<T>(key: string): Promise<T[]>;
  close(): Promise<void>;
}

type Data = Record<string, unknown>;

/**
 * The state in one JSON file, rewritten atomically (a temporary file renamed over it); operations are
 * serialized within the process. Replacing the file is what costs: on ext4 (auto_da_alloc) a rename over an
 * existing file first writes the new file's data out, milliseconds to tens of milliseconds each on a busy
 * disk. So operations queued together share one read and one rewrite (a group commit): each one's promise
 * settles once the file that holds it is in place, as before; callers that record several things at once
 * (recordBackup) issue them together.
 */
export class FileStateStore implements StateStore {
  readonly kind = 'file' as const;
  private queue: {
    fn: (d: Data) => { result: unknown; changed: boolean };
    resolve: (v: unknown) => void;
    reject: (err: unknown) => void;
  }[] = [];
  private draining?: Promise<void>;

  constructor(readonly file: string) {}

  private read(): Data {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if (systemCodeOf(err) === 'ENOENT') return {};
      throw err;
    }
    try {
      const d = JSON.parse(text) as unknown;
      return d && typeof d === 'object' && !Array.isArray(d) ? (d as Data) : {};
    } catch (err) {
      log().warn(
        { file: this.file, err: messageOf(err) },
        'the worker state file is damaged; starting with an empty state',
      );
      return {};
    }
  }

  private write(d: Data): void {
    mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(tmp, JSON.stringify(d, null, 1));
    renameSync(tmp, this.file);
  }

  private op<R>(fn: (d: Data) => { result: R; changed: boolean }): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      // Started on the next turn: every operation issued in this one joins the same batch.
      this.draining ??= new Promise<void>((done) => setImmediate(done)).then(() => this.drain());
    });
  }

  /** Applies the queued operations in order, a batch at a time: one read, one rewrite if any changed. */
  private drain(): void {
    while (this.queue.length) {
      const batch = this.queue.splice(0);
      const done: { ok: boolean; value: unknown }[] = [];
      try {
        const d = this.read();
        let changed = false;
        for (const b of batch) {
          try {
            const r = b.fn(d);
            changed ||= r.changed;
            done.push({ ok: true, value: r.result });
          } catch (err) {
            done.push({ ok: false, value: err });
          }
        }
        if (changed) this.write(d);
      } catch (err) {
        // The file could not be read or replaced: nothing of this batch is recorded.
        for (const b of batch) b.reject(err);
        continue;
      }
      batch.forEach((b, i) => (done[i]!.ok ? b.resolve(done[i]!.value) : b.reject(done[i]!.value)));
    }
    this.draining = undefined;
  }

  get<T>(key: string): Promise<T | undefined> {
    return this.op((d) => ({ result: d[key] as T | undefined, changed: false }));
  }

  set(key: string, value: unknown): Promise<void> {
    return this.op((d) => {
      d[key] = value;
      return { result: undefined, changed: true };
    });
  }

  setIfAbsent(key: string, value: unknown): Promise<boolean> {
    return this.op((d) => {
      if (key in d) return { result: false, changed: false };
      d[key] = value;
      return { result: true, changed: true };
    });
  }

  delete(key: string): Promise<boolean> {
    return this.op((d) => {
      if (!(key in d)) return { result: false, changed: false };
      delete d[key];
      return { result: true, changed: true };
    });
  }

  entries<T>(prefix: string): Promise<[string, T][]> {
    return this.op((d) => ({
      result: (Object.entries(d).filter(([k]) => k.startsWith(prefix)) as [string, T][]).sort((a, b) =>
        a[0].localeCompare(b[0]),
      ),
      changed: false,
    }));
  }

  incr(key: string, by: Record<string, number>): Promise<void> {
    return this.op((d) => {
      const cur = (d[`counter:${key}`] as Record<string, number> | undefined) ?? {};
      for (const [k, n] of Object.entries(by)) cur[k] = (cur[k] ?? 0) + n;
      d[`counter:${key}`] = cur;
      return { result: undefined, changed: true };
    });
  }

  counters(key: string): Promise<Record<string, number>> {
    return this.op((d) => ({
      result: { ...((d[`counter:${key}`] as Record<string, number> | undefined) ?? {}) },
      changed: false,
    }));
  }

  push(key: string, value: unknown, max: number): Promise<void> {
    return this.op((d) => {
      const cur = Array.isArray(d[`list:${key}`]) ? (d[`list:${key}`] as unknown[]) : [];
      d[`list:${key}`] = [value, ...cur].slice(0, max);
      return { result: undefined, changed: true };
    });
  }

  list<T>(key: string): Promise<T[]> {
    return this.op((d) => ({
      result: (Array.isArray(d[`list:${key}`]) ? d[`list:${key}`] : []) as T[],
      changed: false,
    }));
  }

  async close(): Promise<void> {
    while (this.draining) await this.draining;
  }
}

/** The state in Redis: a hash of JSON values, counters as hashes of numbers, lists as Redis lists. */
export class RedisStateStore implements StateStore {
  readonly kind = 'redis' as const;
  private readonly hash: string;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ownsConnection = true,
  ) {
    this.hash = `${prefix}:state`;
  }

  private decode<T>(v: string | null | undefined): T | undefined {
    if (v === null || v === undefined) return undefined;
    try {
      return JSON.parse(v) as T;
    } catch (err) {
      log().warn({ hash: this.hash, err: messageOf(err) }, 'a damaged value in the Redis state is ignored');
      return undefined;
    }
  }

  async get<T>(key: string): Promise<T | undefined> {
    return this.decode<T>(await this.redis.hget(this.hash, key));
  }

  async set(key: string, value: unknown): Promise<void> {
    await this.redis.hset(this.hash, key, JSON.stringify(value));
  }

  async setIfAbsent(key: string, value: unknown): Promise<boolean> {
    return (await this.redis.hsetnx(this.hash, key, JSON.stringify(value))) === 1;
  }

  async delete(key: string): Promise<boolean> {
    return (await this.redis.hdel(this.hash, key)) === 1;
  }

  async entries<T>(prefix: string): Promise<[string, T][]> {
    const all = await this.redis.hgetall(this.hash);
    const out: [string, T][] = [];
    for (const [k, v] of Object.entries(all)) {
      if (!k.startsWith(prefix)) continue;
      const d = this.decode<T>(v);
      if (d !== undefined) out.push([k, d]);
    }
    return out.sort((a, b) => a[0].localeCompare(b[0]));
  }

  async incr(key: string, by: Record<string, number>): Promise<void> {
    const m = this.redis.multi();
    for (const [k, n] of Object.entries(by)) m.hincrbyfloat(`${this.prefix}:counter:${key}`, k, n);
    await m.exec();
  }

  async counters(key: string): Promise<Record<string, number>> {
    const all = await this.redis.hgetall(`${this.prefix}:counter:${key}`);
    return Object.fromEntries(Object.entries(all).map(([k, v]) => [k, Number(v)]));
  }

  async push(key: string, value: unknown, max: number): Promise<void> {
    const list = `${this.prefix}:list:${key}`;
    await this.redis
      .multi()
      .lpush(list, JSON.stringify(value))
      .ltrim(list, 0, max - 1)
      .exec();
  }

  async list<T>(key: string): Promise<T[]> {
    const raw = await this.redis.lrange(`${this.prefix}:list:${key}`, 0, -1);
    return raw.map((r) => this.decode<T>(r)).filter((x): x is Awaited<T> => x !== undefined) as T[];
  }

  async close(): Promise<void> {
    if (this.ownsConnection)
      await this.redis
        .quit()
        .catch((err: unknown) => log().debug({ err: messageOf(err) }, 'closing the state connection'));
  }
}

/** An ioredis connection as BullMQ needs it (no per-request retry limit), failing fast when Redis is down. */
export function redisConnection(url: string, opts: { lazy?: boolean } = {}): Redis {
  // Loaded on first use: ioredis costs a third of a second of start-up, and most runs have no `queue.redis`.
  const { Redis } = createRequire(import.meta.url)('ioredis') as typeof import('ioredis');
  return new Redis(url, {
    maxRetriesPerRequest: null,
    lazyConnect: opts.lazy ?? false,
    enableReadyCheck: true,
  });
}

/** Checks that Redis answers within `ms` (the state and queue depend on it). */
export async function pingRedis(redis: Redis, ms = 5000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      redis.ping(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new TargetError(`Redis did not answer within ${ms / 1000} s`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The configured state store: Redis with `queue.redis`, else `<cache>/worker-state.json`. */
export function openStateStore(config: Config): StateStore {
  if (config.queue) return new RedisStateStore(redisConnection(config.queue.redis), config.queue.prefix);
  return fileStateStore(config);
}

/** The state file in the cache directory (the state store without a queue, and the fallback with one). */
export function fileStateStore(config: Config): FileStateStore {
  return new FileStateStore(path.join(config.cache ?? defaultCacheRoot(), 'worker-state.json'));
}

/**
 * The configured state store, for a process that is not the worker (a command run by hand or from cron):
 * Redis must answer within `pingMs`, else a TargetError naming its host (never its password) and the last
 * connection error — instead of commands that wait for Redis forever.
 */
export async function openStateStoreChecked(config: Config, pingMs = 5000): Promise<StateStore> {
  if (!config.queue) return fileStateStore(config);
  const redis = await connectRedisChecked(config.queue.redis, pingMs);
  return new RedisStateStore(redis, config.queue.prefix);
}

/**
 * A Redis connection that has answered a ping within `pingMs`, for a process that is not the worker. Else it
 * is closed and a TargetError names the host (never the password) and the last connection error.
 */
export async function connectRedisChecked(url: string, pingMs: number): Promise<Redis> {
  const redis = redisConnection(url, { lazy: true });
  // Connection errors are the client's to retry; the last one explains a ping that timed out.
  let lastError: Error | undefined;
  redis.on('error', (err: Error) => {
    lastError = err;
  });
  try {
    await pingRedis(redis, pingMs);
  } catch (err) {
    redis.disconnect();
    let where = 'Redis';
    try {
      where = `Redis at ${new URL(url).host}`;
    } catch {
      // An unparsable URL is named generically: it may hold a password.
    }
    throw new TargetError(`${where} does not answer (${lastError?.message ?? messageOf(err)})`);
  }
  return redis;
}
