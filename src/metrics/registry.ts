import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { Config } from '../config/schema.js';
import type { HealthReport } from '../health/evaluate.js';
import { readRecords, type DrillRecord, type JobRecord, type TargetRecord } from '../health/records.js';
import type { StateStore } from '../health/state.js';
import { StoreMetrics } from '../store/metrics.js';
import { STORE_OPERATIONS } from '../store/metrics.js';

/**
 * The worker's Prometheus metrics (prom-client). Job outcomes, drill results and the targets' newest
 * snapshots come from the state store at scrape time, so every worker of a BullMQ cluster reports the same
 * values (use `max by (…)` across instances); object store traffic and the process are per worker.
 *
 *   regbackup_job_last_success_timestamp_seconds{job,source}   last successful run (backup per source, drill per target)
 *   regbackup_job_last_success_duration_seconds{job,source}    its duration
 *   regbackup_job_last_run_timestamp_seconds{job,source}       last run, whatever its outcome
 *   regbackup_job_last_run_success{job,source}                 1 when the last run succeeded, else 0
 *   regbackup_job_runs_total{job,source}                       runs recorded
 *   regbackup_job_failures_total{job,source}                   failed runs recorded
 *   regbackup_target_new_bytes_total{target}                   new bytes (before compression) written by backups
 *   regbackup_target_dedup_bytes_total{target}                 bytes found already stored (deduplicated)
 *   regbackup_target_stored_bytes_total{target}                new bytes after compression
 *   regbackup_target_written_bytes_total{target}               bytes uploaded by committing processes (packs, index, snapshots, catch-up)
 *   regbackup_target_up{target}                                1 when the target could be listed at the last check
 *   regbackup_target_snapshots{target}                         snapshots on the target
 *   regbackup_target_newest_snapshot_timestamp_seconds{target}
 *   regbackup_rpo_seconds{target}                              age of the newest snapshot on the target
 *   regbackup_drill_rto_seconds{target}                        last drill: time to a verified standby
 *   regbackup_drill_rpo_seconds{target}                        last drill: age of the snapshot it restored
 *   regbackup_drill_success{target}                            1 when the last drill passed
 *   regbackup_drill_last_timestamp_seconds{target}
 *   regbackup_queue_jobs{state}                                jobs by state (waiting, active, delayed, failed, …)
 *   regbackup_alerts_open                                      open alert incidents
 *   regbackup_health_status                                    0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (last check)
 *   regbackup_store_requests_total{target,op}                  object store requests by this process
 *   regbackup_store_errors_total{target,op}                    failed ones
 *   regbackup_store_bytes_total{target,direction}              body bytes up / down
 *   regbackup_process_* , regbackup_nodejs_*                   prom-client's default process metrics
 */
export interface MetricsOptions {
  state?: StateStore;
  /** Job counts by state (BullMQ), or the in-process driver's. */
  queueCounts?: () => Promise<Record<string, number>>;
  /** The last health report (the worker's periodic check). */
  health?: () => HealthReport | undefined;
  defaultMetrics?: boolean;
}

interface Snapshot {
  jobs: JobRecord[];
  drills: Record<string, DrillRecord>;
  targets: Record<string, TargetRecord>;
  bytes: Record<string, Record<string, number>>;
  incidents: number;
  queue: Record<string, number>;
}

const sec = (iso?: string) => (iso ? Date.parse(iso) / 1000 : undefined);

export class Metrics {
  readonly registry = new Registry();
  private readonly stores = new Map<string, StoreMetrics>();
  private pending?: { at: number; p: Promise<Snapshot> };

  constructor(
    private readonly config: Config,
    private readonly opts: MetricsOptions = {},
  ) {
    if (opts.defaultMetrics !== false)
      collectDefaultMetrics({ register: this.registry, prefix: 'regbackup_' });
    const snap = () => this.snapshot();
    const registers = [this.registry];
    const jobLabels = ['job', 'source'] as const;

    const jobGauge = (name: string, help: string, value: (j: JobRecord) => number | undefined) =>
      new Gauge({
        name,
        help,
        labelNames: jobLabels,
        registers,
        async collect() {
          this.reset();
          for (const j of (await snap()).jobs) {
            const v = value(j);
            if (v !== undefined) this.set({ job: j.job, source: j.source }, v);
          }
        },
      });
    jobGauge(
      'regbackup_job_last_success_timestamp_seconds',
      'Time of the last successful run, per job and source (drills: per target)',
      (j) => sec(j.lastSuccess),
    );
    jobGauge('regbackup_job_last_success_duration_seconds', 'Duration of the last successful run', (j) =>
      j.lastSuccess && j.lastSuccessDurationMs !== undefined ? j.lastSuccessDurationMs / 1000 : undefined,
    );
    jobGauge('regbackup_job_last_run_timestamp_seconds', 'Time of the last run, whatever its outcome', (j) =>
      sec(j.lastRun),
    );
    jobGauge(
      'regbackup_job_last_run_success',
      '1 when the last run succeeded (fully or partially), else 0',
      (j) => (j.lastStatus === 'ok' || j.lastStatus === 'partial' ? 1 : 0),
    );
    const jobCounter = (name: string, help: string, value: (j: JobRecord) => number) =>
      new Counter({
        name,
        help,
        labelNames: jobLabels,
        registers,
        async collect() {
          this.reset();
          for (const j of (await snap()).jobs) this.inc({ job: j.job, source: j.source }, value(j));
        },
      });
    jobCounter('regbackup_job_runs_total', 'Runs recorded, per job and source', (j) => j.runs);
    jobCounter('regbackup_job_failures_total', 'Failed runs recorded, per job and source', (j) => j.failures);

    const bytesCounter = (name: string, help: string, field: string) =>
      new Counter({
        name,
        help,
        labelNames: ['target'],
        registers,
        async collect() {
          this.reset();
          for (const [target, c] of Object.entries((await snap()).bytes)) this.inc({ target }, c[field] ?? 0);
        },
      });
    bytesCounter(
      'regbackup_target_new_bytes_total',
      'New bytes (before compression) written by backups, per target',
      'newBytes',
    );
    bytesCounter(
      'regbackup_target_dedup_bytes_total',
      'Bytes found already stored (deduplicated), per target',
      'dedupBytes',
    );
    bytesCounter(
      'regbackup_target_stored_bytes_total',
      'New bytes after compression, per target',
      'storedBytes',
    );
    bytesCounter(
      'regbackup_target_written_bytes_total',
      'Bytes uploaded by committing processes, per target',
      'written',
    );

    const targetGauge = (name: string, help: string, value: (t: TargetRecord) => number | undefined) =>
      new Gauge({
        name,
        help,
        labelNames: ['target'],
        registers,
        async collect() {
          this.reset();
          for (const [target, t] of Object.entries((await snap()).targets)) {
            const v = value(t);
            if (v !== undefined) this.set({ target }, v);
          }
        },
      });
    targetGauge('regbackup_target_up', '1 when the target could be listed at the last check', (t) =>
      t.error ? 0 : 1,
    );
    targetGauge('regbackup_target_snapshots', 'Snapshots on the target', (t) => t.snapshots);
    targetGauge(
      'regbackup_target_newest_snapshot_timestamp_seconds',
      'Time of the newest snapshot on the target',
      (t) => sec(t.newest),
    );
    targetGauge('regbackup_rpo_seconds', 'Recovery point: age of the newest snapshot on the target', (t) =>
      t.newest ? Math.max(0, Date.now() / 1000 - sec(t.newest)!) : undefined,
    );

    const drillGauge = (name: string, help: string, value: (d: DrillRecord) => number | undefined) =>
      new Gauge({
        name,
        help,
        labelNames: ['target'],
        registers,
        async collect() {
          this.reset();
          for (const [target, d] of Object.entries((await snap()).drills)) {
            const v = value(d);
            if (v !== undefined) this.set({ target }, v);
          }
        },
      });
    drillGauge('regbackup_drill_rto_seconds', 'Last restore drill: time to a verified standby', (d) =>
      d.rtoMs !== undefined ? d.rtoMs / 1000 : undefined,
    );
    drillGauge('regbackup_drill_rpo_seconds', 'Last restore drill: age of the snapshot it restored', (d) =>
      d.rpoMs !== undefined ? d.rpoMs / 1000 : undefined,
    );
    drillGauge('regbackup_drill_success', '1 when the last restore drill from the target passed', (d) =>
      d.ok ? 1 : 0,
    );
    drillGauge('regbackup_drill_last_timestamp_seconds', 'Time of the last restore drill', (d) =>
      sec(d.time),
    );

    new Gauge({
      name: 'regbackup_queue_jobs',
      help: 'Jobs by state',
      labelNames: ['state'],
      registers,
      async collect() {
        this.reset();
        for (const [state, n] of Object.entries((await snap()).queue)) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'regbackup_alerts_open',
      help: 'Open alert incidents',
      registers,
      async collect() {
        this.set((await snap()).incidents);
      },
    });
    const health = opts.health;
    new Gauge({
      name: 'regbackup_health_status',
      help: 'Health at the last check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN',
      registers,
      collect() {
        const h = health?.();
        this.set(h ? h.exitCode : 3);
      },
    });

    const stores = this.stores;
    new Counter({
      name: 'regbackup_store_requests_total',
      help: 'Object store requests made by this process (every attempt), per target and operation',
      labelNames: ['target', 'op'],
      registers,
      collect() {
        this.reset();
        for (const [target, m] of stores)
          for (const op of STORE_OPERATIONS) this.inc({ target, op }, m.snapshot().requests[op]);
      },
    });
    new Counter({
      name: 'regbackup_store_errors_total',
      help: 'Object store requests that failed, per target and operation',
      labelNames: ['target', 'op'],
      registers,
      collect() {
        this.reset();
        for (const [target, m] of stores)
          for (const op of STORE_OPERATIONS) this.inc({ target, op }, m.snapshot().errors[op]);
      },
    });
    new Counter({
      name: 'regbackup_store_bytes_total',
      help: 'Object store body bytes sent (up) and received (down) by this process',
      labelNames: ['target', 'direction'],
      registers,
      collect() {
        this.reset();
        for (const [target, m] of stores) {
          const s = m.snapshot();
          this.inc({ target, direction: 'up' }, s.bytesUp);
          this.inc({ target, direction: 'down' }, s.bytesDown);
        }
      },
    });
  }

  /** The counters of a target's store (pass to openStore so that its traffic is exported). */
  storeMetrics(target: string): StoreMetrics {
    let m = this.stores.get(target);
    if (!m) this.stores.set(target, (m = new StoreMetrics()));
    return m;
  }

  /** The state, read once per scrape (every metric's collect() shares it). */
  private snapshot(): Promise<Snapshot> {
    const now = Date.now();
    if (this.pending && now - this.pending.at < 1000) return this.pending.p;
    const p = this.read();
    this.pending = { at: now, p };
    p.catch(() => {
      if (this.pending?.p === p) this.pending = undefined;
    });
    return p;
  }

  private async read(): Promise<Snapshot> {
    const state = this.opts.state;
    const empty: Snapshot = { jobs: [], drills: {}, targets: {}, bytes: {}, incidents: 0, queue: {} };
    if (!state) return { ...empty, queue: (await this.opts.queueCounts?.()) ?? {} };
    const [records, incidents, queue] = await Promise.all([
      readRecords(state),
      state.entries('incident:'),
      this.opts.queueCounts?.() ?? Promise.resolve({}),
    ]);
    const bytes: Snapshot['bytes'] = {};
    for (const t of this.config.targets) bytes[t.name] = await state.counters(`bytes:${t.name}`);
    return {
      jobs: records.jobs,
      drills: records.drills,
      targets: records.targets,
      bytes,
      incidents: incidents.length,
      queue,
    };
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
