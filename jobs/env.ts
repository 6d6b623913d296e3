import path from 'node:path';
import type { Redis } from 'ioredis';
import { AlertManager } from '../src/alerts/index.js';
import type { Config } from '../src/config/schema.js';
import { messageOf } from '../src/errors.js';
import type { HealthReport } from '../src/health/evaluate.js';
import { FileStateStore, RedisStateStore, redisConnection, type StateStore } from '../src/health/state.js';
import type { Logger } from '../src/log.js';
import { Metrics } from '../src/metrics/registry.js';
import { defaultCacheRoot } from '../src/repo/repository.js';
import { openStore } from '../src/store/index.js';
import type { ObjectStore } from '../src/store/types.js';
import { FileLocks, RedisLocks, type LockService } from './locks.js';

/**
 * What every job needs, created once per worker process: the configuration, the targets' stores (long-lived,
 * their traffic counted for /metrics), the state store, locks, alerts, metrics. With `queue.redis` the state
 * and the locks live in Redis (shared by every worker); without, in files in the cache directory.
 */
export interface JobEnv {
  config: Config;
  /** The configuration file's directory (for relative paths such as drill.tarballs). */
  configDir: string;
  logger: Logger;
  stores: ObjectStore[];
  state: StateStore;
  locks: LockService;
  alerts: AlertManager;
  metrics: Metrics;
  cacheRoot: string;
  /** Redis for the state and locks (BullMQ opens its own connections). */
  redis?: Redis;
  /** The last health check of this process. */
  health?: HealthReport;
  close(): Promise<void>;
}

export function createEnv(
  config: Config,
  opts: { logger: Logger; configPath?: string; queueCounts?: () => Promise<Record<string, number>> },
): JobEnv {
  const redis = config.queue ? redisConnection(config.queue.redis) : undefined;
  const cacheRoot = config.cache ?? defaultCacheRoot();
  const state: StateStore = redis
    ? new RedisStateStore(redis, config.queue!.prefix, false)
    : new FileStateStore(path.join(cacheRoot, 'worker-state.json'));
  const locks: LockService = redis ? new RedisLocks(redis, config.queue!.prefix) : new FileLocks(cacheRoot);
  const env: JobEnv = {
    config,
    configDir: opts.configPath ? path.dirname(path.resolve(opts.configPath)) : process.cwd(),
    logger: opts.logger,
    stores: [],
    state,
    locks,
    alerts: new AlertManager(config, state, opts.logger),
    metrics: undefined as unknown as Metrics,
    cacheRoot,
    redis,
    async close() {
      // Once no job runs: the targets' stores (their sockets and HTTP agents), in the configured order, then
      // the state store, then Redis. Each is closed even when one before it fails (that failure is logged:
      // the process is stopping, and a close that fails must not hide why, nor keep the others open).
      for (const store of env.stores)
        await store
          .close()
          .catch((err: unknown) =>
            opts.logger.warn(
              { target: store.name, err: messageOf(err) },
              `closing target ${store.name} failed`,
            ),
          );
      await state
        .close()
        .catch((err: unknown) => opts.logger.warn({ err: messageOf(err) }, 'closing the state store failed'));
      if (redis)
        await redis.quit().catch((err: unknown) => opts.logger.debug({ err: String(err) }, 'closing Redis'));
    },
  };
  env.metrics = new Metrics(config, { state, queueCounts: opts.queueCounts, health: () => env.health });
  env.stores = config.targets.map((t) => openStore(t, { metrics: env.metrics.storeMetrics(t.name) }));
  return env;
}
