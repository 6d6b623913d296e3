import type { Config } from '../src/config/schema.js';
import { messageOf, TargetError } from '../src/errors.js';
import { pingRedis } from '../src/health/state.js';
import type { Logger } from '../src/log.js';
import { startInfluxPush } from '../src/metrics/influx.js';
import { serveMetrics, type MetricsServer } from '../src/metrics/server.js';
import { BullmqDriver } from './bullmq.js';
import type { Driver } from './driver.js';
import { createEnv, type JobEnv } from './env.js';
import { InProcessDriver } from './inprocess.js';
import { afterJob } from './processors.js';

/**
 * `regbackup worker`: the schedule, run by the in-process driver (node-cron) or through BullMQ
 * (`queue.redis`); Prometheus metrics on `metrics.prometheus`; InfluxDB pushes on `metrics.influxdb`; a
 * health check every `alerts.checkInterval` (the RPO grows while nothing runs) that raises and resolves
 * alerts.
 */
export interface RunningWorker {
  driver: Driver;
  env: JobEnv;
  metrics?: MetricsServer;
  /** Stops taking jobs, lets running ones finish for `graceMs` (default schedule.shutdownGrace), interrupts the rest. */
  stop(graceMs?: number): Promise<void>;
}

export interface WorkerOptions {
  logger: Logger;
  configPath?: string;
  /** Overrides queue.concurrency. */
  concurrency?: number;
  /** BullMQ: only install the schedules and leave (no processing); in-process: ignored. */
  process?: boolean;
}

export async function startWorker(config: Config, opts: WorkerOptions): Promise<RunningWorker> {
  let driver: Driver | undefined;
  const env = createEnv(config, {
    logger: opts.logger,
    configPath: opts.configPath,
    queueCounts: () => driver?.queueCounts() ?? Promise.resolve({}),
  });
  const cleanup: (() => Promise<void>)[] = [];
  try {
    if (env.redis) {
      try {
        await pingRedis(env.redis);
      } catch (err) {
        throw new TargetError(`cannot reach Redis (queue.redis): ${messageOf(err)}`);
      }
    }
    driver = config.queue
      ? new BullmqDriver(env, { concurrency: opts.concurrency, process: opts.process })
      : new InProcessDriver(env);
    const d = driver;
    cleanup.push(() => d.stop(0));
    let metrics: MetricsServer | undefined;
    const prom = config.metrics?.prometheus;
    if (prom) {
      metrics = await serveMetrics(env.metrics, {
        host: prom.host,
        port: prom.port,
        logger: opts.logger,
        health: () => env.health,
      });
      cleanup.push(() => metrics!.close());
      opts.logger.info({ url: `${metrics.url}/metrics` }, 'serving Prometheus metrics');
    }
    const stopInflux = startInfluxPush(config, env.metrics, opts.logger);
    if (stopInflux) cleanup.push(stopInflux);
    await driver.start();

    // Health now and every alerts.checkInterval: alerts fire and resolve even when no job runs.
    const tickCtx = { env, id: 'health', signal: new AbortController().signal, logger: opts.logger };
    let ticking: Promise<void> | undefined;
    const tick = () => {
      ticking ??= afterJob(tickCtx).finally(() => {
        ticking = undefined;
      });
      return ticking;
    };
    void tick();
    const timer = setInterval(() => void tick(), config.alerts?.checkInterval ?? 60_000);
    timer.unref();

    let stopped: Promise<void> | undefined;
    return {
      driver,
      env,
      metrics,
      stop(graceMs = config.schedule?.shutdownGrace ?? 20_000) {
        stopped ??= (async () => {
          clearInterval(timer);
          await d.stop(graceMs);
          await ticking;
          for (const c of cleanup.slice(1).reverse())
            await c().catch((err: unknown) => opts.logger.warn({ err: messageOf(err) }, 'while stopping'));
          await env.close();
          opts.logger.info('worker stopped');
        })();
        return stopped;
      },
    };
  } catch (err) {
    for (const c of cleanup.reverse())
      await c().catch((e: unknown) =>
        opts.logger.debug({ err: messageOf(e) }, 'while stopping after a failed start'),
      );
    await env.close();
    throw err;
  }
}
