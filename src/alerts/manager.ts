import type { Config } from '../config/schema.js';
import { messageOf } from '../errors.js';
import type { Problem } from '../health/evaluate.js';
import type { StateStore } from '../health/state.js';
import type { Logger } from '../log.js';
import { notifiersFor, type AlertEvent, type Notifier } from './notifiers.js';

/** An open incident, as remembered in the state store under `incident:<dedupKey>`. */
export interface Incident {
  dedupKey: string;
  problem: string;
  severity: Problem['severity'];
  summary: string;
  since: string;
  /** Notifiers not yet told (a failed send is retried at the next reconciliation). */
  pending: string[];
}

interface Resolving {
  dedupKey: string;
  summary: string;
  pending: string[];
}

export interface ReconcileResult {
  triggered: string[];
  resolved: string[];
  open: string[];
  /** Sends that failed (retried next time). */
  errors: string[];
}

/**
 * Turns the current list of problems into alert incidents: a problem not yet open is triggered (once: the
 * incident is claimed atomically in the state store before anything is sent, so several workers never
 * trigger it twice), an open incident whose problem is gone is resolved. The dedup key of a problem is
 * `<alerts.name>:<problem key>`, stable across runs and hosts: PagerDuty keeps one incident per problem, and
 * a problem seen again every minute stays one incident.
 */
export class AlertManager {
  readonly notifiers: Notifier[];
  readonly deployment: string;

  constructor(
    config: Config,
    private readonly state: StateStore,
    private readonly logger: Logger,
    notifiers?: Notifier[],
  ) {
    this.notifiers = notifiers ?? notifiersFor(config.alerts);
    this.deployment = config.alerts?.name ?? 'regbackup';
  }

  get enabled(): boolean {
    return this.notifiers.length > 0;
  }

  private async sendAll(e: AlertEvent, to: string[], errors: string[]): Promise<string[]> {
    const failed: string[] = [];
    await Promise.all(
      this.notifiers
        .filter((n) => to.includes(n.name))
        .map(async (n) => {
          try {
            await n.send(e);
          } catch (err) {
            failed.push(n.name);
            errors.push(`${n.name}: ${messageOf(err)}`);
            this.logger.error(
              { notifier: n.name, dedupKey: e.dedupKey, err: messageOf(err) },
              `sending the ${e.action} of an alert failed; retried at the next check`,
            );
          }
        }),
    );
    return failed;
  }

  async reconcile(problems: Problem[]): Promise<ReconcileResult> {
    const out: ReconcileResult = { triggered: [], resolved: [], open: [], errors: [] };
    if (!this.enabled) return out;
    const all = this.notifiers.map((n) => n.name);
    const prefix = `${this.deployment}:`;
    const wanted = new Map(problems.map((p) => [`${prefix}${p.key}`, p]));
    const now = new Date().toISOString();

    for (const [dedupKey, p] of wanted) {
      const key = `incident:${dedupKey}`;
      const inc: Incident = {
        dedupKey,
        problem: p.key,
        severity: p.severity,
        summary: p.summary,
        since: now,
        pending: all,
      };
      let pending: string[];
      if (await this.state.setIfAbsent(key, inc)) {
        out.triggered.push(dedupKey);
        this.logger.warn({ alert: dedupKey, severity: p.severity }, `alert: ${p.summary}`);
        pending = all;
      } else {
        const cur = await this.state.get<Incident>(key);
        pending = cur?.pending ?? [];
        if (!pending.length) continue;
      }
      // A resolve still pending for the same key is moot: the problem is back.
      await this.state.delete(`resolving:${dedupKey}`);
      const failed = await this.sendAll(
        { action: 'trigger', dedupKey, problem: p, time: now, deployment: this.deployment },
        pending,
        out.errors,
      );
      await this.state.set(key, {
        ...inc,
        ...((await this.state.get<Incident>(key)) ?? {}),
        pending: failed,
      });
    }

    for (const [key, inc] of await this.state.entries<Incident>('incident:')) {
      if (!inc.dedupKey.startsWith(prefix)) continue;
      if (wanted.has(inc.dedupKey)) {
        out.open.push(inc.dedupKey);
        continue;
      }
      if (!(await this.state.delete(key))) continue; // another worker resolved it
      out.resolved.push(inc.dedupKey);
      this.logger.info({ alert: inc.dedupKey }, `resolved: ${inc.summary}`);
      const told = all.filter((n) => !inc.pending.includes(n));
      const failed = await this.sendAll(
        {
          action: 'resolve',
          dedupKey: inc.dedupKey,
          summary: inc.summary,
          time: now,
          deployment: this.deployment,
        },
        told,
        out.errors,
      );
      if (failed.length)
        await this.state.set(`resolving:${inc.dedupKey}`, {
          dedupKey: inc.dedupKey,
          summary: inc.summary,
          pending: failed,
        } satisfies Resolving);
    }

    for (const [key, r] of await this.state.entries<Resolving>('resolving:')) {
      if (wanted.has(r.dedupKey) || !r.dedupKey.startsWith(prefix)) continue;
      const failed = await this.sendAll(
        {
          action: 'resolve',
          dedupKey: r.dedupKey,
          summary: r.summary,
          time: now,
          deployment: this.deployment,
        },
        r.pending,
        out.errors,
      );
      if (failed.length) await this.state.set(key, { ...r, pending: failed });
      else await this.state.delete(key);
    }
    return out;
  }
}
