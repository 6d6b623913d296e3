import { randomBytes } from 'node:crypto';
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
  /** The current send attempt: the worker that takes its token sends (see takeAttempt). */
  attempt: string;
}

interface Resolving {
  dedupKey: string;
  summary: string;
  pending: string[];
  attempt: string;
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

  /**
   * Takes attempt `attempt` of an incident's sends: true for exactly one caller (every worker that sees the
   * same pending sends tries the same token; the first wins, the others leave them to it).
   */
  private takeAttempt(dedupKey: string, attempt: string): Promise<boolean> {
    return this.state.setIfAbsent(`attempt:${dedupKey}:${attempt}`, new Date().toISOString());
  }

  private async dropAttempts(dedupKey: string): Promise<void> {
    for (const [k] of await this.state.entries(`attempt:${dedupKey}:`)) await this.state.delete(k);
  }

  async reconcile(problems: Problem[]): Promise<ReconcileResult> {
    const out: ReconcileResult = { triggered: [], resolved: [], open: [], errors: [] };
    if (!this.enabled) return out;
    const all = this.notifiers.map((n) => n.name);
    const prefix = `${this.deployment}:`;
    const wanted = new Map(problems.map((p) => [`${prefix}${p.key}`, p]));
    const now = new Date().toISOString();
    const trigger = (dedupKey: string, p: Problem, to: string[]) =>
      this.sendAll(
        { action: 'trigger', dedupKey, problem: p, time: now, deployment: this.deployment },
        to,
        out.errors,
      );
    const resolve = (dedupKey: string, summary: string, to: string[]) =>
      this.sendAll(
        { action: 'resolve', dedupKey, summary, time: now, deployment: this.deployment },
        to,
        out.errors,
      );

    for (const [dedupKey, p] of wanted) {
      const key = `incident:${dedupKey}`;
      // The claim: the incident record (atomic), with the token of its first attempt taken beforehand, so that
      // no other worker can send while the claimer does.
      const attempt = randomBytes(6).toString('hex');
      await this.takeAttempt(dedupKey, attempt);
      const inc: Incident = {
        dedupKey,
        problem: p.key,
        severity: p.severity,
        summary: p.summary,
        since: now,
        pending: all,
        attempt,
      };
      if (await this.state.setIfAbsent(key, inc)) {
        out.triggered.push(dedupKey);
        this.logger.warn({ alert: dedupKey, severity: p.severity }, `alert: ${p.summary}`);
        // A resolve still pending for the same key is moot: the problem is back.
        await this.state.delete(`resolving:${dedupKey}`);
        const failed = await trigger(dedupKey, p, all);
        await this.state.set(key, { ...inc, pending: failed, attempt: randomBytes(6).toString('hex') });
        continue;
      }
      await this.state.delete(`attempt:${dedupKey}:${attempt}`);
      const cur = await this.state.get<Incident>(key);
      if (!cur?.pending.length || !(await this.takeAttempt(dedupKey, cur.attempt))) continue;
      const failed = await trigger(dedupKey, p, cur.pending);
      await this.state.set(key, { ...cur, pending: failed, attempt: randomBytes(6).toString('hex') });
    }

    for (const [key, inc] of await this.state.entries<Incident>('incident:')) {
      if (!inc.dedupKey.startsWith(prefix)) continue;
      if (wanted.has(inc.dedupKey)) {
        out.open.push(inc.dedupKey);
        continue;
      }
      if (!(await this.state.delete(key))) continue; // another worker resolved it
      await this.dropAttempts(inc.dedupKey);
      out.resolved.push(inc.dedupKey);
      this.logger.info({ alert: inc.dedupKey }, `resolved: ${inc.summary}`);
      const failed = await resolve(
        inc.dedupKey,
        inc.summary,
        all.filter((n) => !inc.pending.includes(n)),
      );
      if (failed.length) {
        await this.state.set(`resolving:${inc.dedupKey}`, {
          dedupKey: inc.dedupKey,
          summary: inc.summary,
          pending: failed,
          attempt: randomBytes(6).toString('hex'),
        } satisfies Resolving);
      }
    }

    for (const [key, r] of await this.state.entries<Resolving>('resolving:')) {
      if (wanted.has(r.dedupKey) || !r.dedupKey.startsWith(prefix)) continue;
      if (!(await this.takeAttempt(r.dedupKey, r.attempt))) continue;
      const failed = await resolve(r.dedupKey, r.summary, r.pending);
      if (failed.length)
        await this.state.set(key, { ...r, pending: failed, attempt: randomBytes(6).toString('hex') });
      else {
        await this.state.delete(key);
        await this.dropAttempts(r.dedupKey);
      }
    }
    return out;
  }
}
