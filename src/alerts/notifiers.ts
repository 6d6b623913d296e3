import os from 'node:os';
import type { AlertsConfig } from '../config/schema.js';
import { messageOf, TargetError } from '../errors.js';
import type { Problem } from '../health/evaluate.js';

/** One alert event: a problem is triggered once, and resolved once when it is gone. */
export type AlertEvent =
  | { action: 'trigger'; dedupKey: string; problem: Problem; time: string; deployment: string }
  | { action: 'resolve'; dedupKey: string; summary: string; time: string; deployment: string };

export interface Notifier {
  readonly name: string;
  send(e: AlertEvent): Promise<void>;
}

async function post(
  what: string,
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  timeoutMs = 15_000,
): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
      redirect: 'error',
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new TargetError(`${what}: cannot reach ${new URL(url).origin}: ${messageOf(err)}`);
  }
  const text = await res.text().catch(() => '');
  if (!res.ok) throw new TargetError(`${what}: HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`);
}

/**
 * PagerDuty Events API v2 (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/): `trigger`
 * and `resolve` with the problem's stable `dedup_key`, so that PagerDuty keeps one incident per problem.
 */
export class PagerDutyNotifier implements Notifier {
  readonly name = 'pagerduty';
  constructor(private readonly cfg: NonNullable<AlertsConfig['pagerduty']>) {}

  async send(e: AlertEvent): Promise<void> {
    const body =
      e.action === 'trigger'
        ? {
            routing_key: this.cfg.routingKey,
            event_action: 'trigger',
            dedup_key: e.dedupKey,
            client: 'regbackup',
            payload: {
              summary: `${e.deployment}: ${e.problem.summary}`.slice(0, 1024),
              source: os.hostname(),
              severity: e.problem.severity,
              timestamp: e.time,
              component: e.problem.component ?? 'regbackup',
              group: e.deployment,
              class: e.problem.key.split(':')[0],
              custom_details: { problem: e.problem.key, ...(e.problem.details ?? {}) },
            },
          }
        : { routing_key: this.cfg.routingKey, event_action: 'resolve', dedup_key: e.dedupKey };
    await post('PagerDuty', this.cfg.url, body);
  }
}

/** A generic webhook: one JSON POST per event, with the configured headers. */
export class WebhookNotifier implements Notifier {
  readonly name = 'webhook';
  constructor(private readonly cfg: NonNullable<AlertsConfig['webhook']>) {}

  async send(e: AlertEvent): Promise<void> {
    const body =
      e.action === 'trigger'
        ? {
            event: 'trigger',
            dedupKey: e.dedupKey,
            deployment: e.deployment,
            time: e.time,
            host: os.hostname(),
            problem: e.problem.key,
            severity: e.problem.severity,
            summary: e.problem.summary,
            component: e.problem.component,
            details: e.problem.details ?? {},
          }
        : {
            event: 'resolve',
            dedupKey: e.dedupKey,
            deployment: e.deployment,
            time: e.time,
            host: os.hostname(),
            summary: e.summary,
          };
    await post('webhook', this.cfg.url, body, this.cfg.headers);
  }
}

export function notifiersFor(cfg: AlertsConfig | undefined): Notifier[] {
  const out: Notifier[] = [];
  if (cfg?.pagerduty) out.push(new PagerDutyNotifier(cfg.pagerduty));
  if (cfg?.webhook) out.push(new WebhookNotifier(cfg.webhook));
  return out;
}
