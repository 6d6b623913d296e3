import type { Config } from '../config/schema.js';
import { messageOf } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from './registry.js';

const escTag = (s: string) => s.replace(/[,= \\]/g, (c) => `\\${c}`);
const escMeasurement = (s: string) => s.replace(/[, \\]/g, (c) => `\\${c}`);

/**
 * The registry's counters and gauges as InfluxDB line protocol: one line per series,
 * `<metric>,<label>=<value>… value=<number> <timestamp ns>`. Histograms and summaries are left out.
 */
export async function lineProtocol(metrics: Metrics, now = Date.now()): Promise<string> {
  const ts = `${BigInt(now) * 1_000_000n}`;
  const lines: string[] = [];
  for (const m of await metrics.registry.getMetricsAsJSON()) {
    const type = String(m.type); // 'counter', 'gauge', … at run time (the typings say an enum)
    if (type !== 'counter' && type !== 'gauge') continue;
    for (const v of m.values) {
      if (!Number.isFinite(v.value)) continue;
      const tags = Object.entries(v.labels)
        .filter(([, x]) => x !== undefined && x !== '')
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, x]) => `,${escTag(k)}=${escTag(String(x))}`)
        .join('');
      lines.push(`${escMeasurement(m.name)}${tags} value=${v.value} ${ts}`);
    }
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/** Pushes the metrics to InfluxDB every `metrics.influxdb.interval`; returns a stop function. */
export function startInfluxPush(
  config: Config,
  metrics: Metrics,
  logger: Logger,
): (() => Promise<void>) | undefined {
  const cfg = config.metrics?.influxdb;
  if (!cfg) return undefined;
  let busy: Promise<void> | undefined;
  const push = async () => {
    const body = await lineProtocol(metrics);
    if (!body) return;
    const res = await fetch(cfg.url, {
      method: 'POST',
      headers: {
        'content-type': 'text/plain; charset=utf-8',
        ...(cfg.token ? { authorization: `Token ${cfg.token}` } : {}),
      },
      body,
      signal: AbortSignal.timeout(15_000),
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${(await res.text().catch(() => '')).slice(0, 200)}`);
  };
  const tick = () => {
    if (busy) return;
    busy = push()
      .catch((err: unknown) => logger.warn({ err: messageOf(err) }, 'pushing metrics to InfluxDB failed'))
      .finally(() => {
        busy = undefined;
      });
  };
  const timer = setInterval(tick, cfg.interval);
  timer.unref();
  tick();
  return async () => {
    clearInterval(timer);
    await busy;
  };
}
