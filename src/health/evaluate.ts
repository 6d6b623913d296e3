import type { Config } from '../config/schema.js';
import { rpoThreshold, type FreshnessReport } from './freshness.js';
import type { BackupRecord, DrillRecord, JobRecord, TargetRecord } from './records.js';

/**
 * Health: from the records of the state store and what the targets hold now, the list of problems — each
 * with a stable key, so that one problem is one alert incident however often it is seen — and an overall
 * status in the Nagios sense (OK, WARNING, CRITICAL, UNKNOWN; exit statuses 0-3).
 *
 * Problems (key: severity):
 *   target-unreachable:<t>  critical  the target cannot be listed
 *   rpo:<t>                 critical  the newest snapshot on the target is older than the RPO threshold, or there is none
 *   snapshot-unreadable:<t> critical  the newest snapshot on the target cannot be read (corrupt, forged)
 *   target-behind:<t>       warning   the target misses the newest snapshot of the others
 *   backup-failed           critical  the last backup run wrote no snapshot
 *   backup-partial          warning   the last backup run left something behind (a database, a file)
 *   source-failed:<s>       critical  the last backup run could not read this source (carried over, or absent)
 *   source-rpo:<s>          critical  the newest data read from the source (not carried over) is older than
 *                                     its RPO threshold, or no snapshot holds any
 *   freshness-unknown       warning   the snapshots could not be read to tell how old each source's data is
 *   drill-failed:<t>        critical  the last restore drill from this target failed
 *   drill-overdue           warning   the newest drill is older than alerts.drillMaxAge (once a drill has run)
 *   check-failed:<t>        critical  the last scheduled `check` found problems on the target
 *   prune-failed            warning   the last scheduled prune (forget + prune) failed
 */
export type Severity = 'warning' | 'critical';
export type HealthStatus = 'OK' | 'WARNING' | 'CRITICAL' | 'UNKNOWN';

export const STATUS_EXIT: Record<HealthStatus, 0 | 1 | 2 | 3> = {
  OK: 0,
  WARNING: 1,
  CRITICAL: 2,
  UNKNOWN: 3,
};

export interface Problem {
  key: string;
  severity: Severity;
  summary: string;
  /** The target or source concerned. */
  component?: string;
  details?: Record<string, unknown>;
}

export interface TargetHealth {
  name: string;
  reachable: boolean;
  newest?: string;
  rpoSeconds?: number;
  snapshots: number;
  drill?: { time: string; ok: boolean; rtoSeconds?: number; rpoSeconds?: number };
}

export interface HealthReport {
  status: HealthStatus;
  exitCode: 0 | 1 | 2 | 3;
  checkedAt: string;
  problems: Problem[];
  targets: TargetHealth[];
  lastBackup?: BackupRecord;
  /** One line for humans and Nagios: "REGBACKUP OK - …". */
  summary: string;
  /** Nagios performance data: `label=value[unit];warn;crit;min;max …`. */
  perfdata: string;
}

export interface HealthInput {
  targets: Record<string, TargetRecord>;
  backup?: BackupRecord;
  drills: Record<string, DrillRecord>;
  /** Job records (check and prune outcomes). */
  jobs?: JobRecord[];
  /** How old each source's data is in the repository (freshness.ts). */
  freshness?: FreshnessReport;
  /** Why the freshness could not be read (no worker key, no target answers). */
  freshnessError?: string;
}

const DEFAULT_DRILL_AGE = 8 * 86400_000;
/** A target missing the newest snapshot this long after it was written is behind (not just mid-commit). */
const BEHIND_GRACE = 10 * 60_000;

/** A compact age: 42s, 5m, 3h12m, 9d, 2d4h. */
export function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h}h${m % 60}m` : `${h}h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d}d${h % 24}h` : `${d}d`;
}

export function evaluateHealth(config: Config, input: HealthInput, now = Date.now()): HealthReport {
  const rpoLimit = rpoThreshold(config);
  const drillMaxAge = config.alerts?.drillMaxAge ?? DEFAULT_DRILL_AGE;
  const problems: Problem[] = [];
  const targets: TargetHealth[] = [];
  const newestOverall = Math.max(
    0,
    ...Object.values(input.targets).flatMap((t) => (t.newest ? [Date.parse(t.newest)] : [])),
  );

  for (const t of config.targets) {
    const rec = input.targets[t.name];
    const drill = input.drills[t.name];
    const newest = rec?.newest ? Date.parse(rec.newest) : undefined;
    const th: TargetHealth = {
      name: t.name,
      reachable: Boolean(rec && !rec.error),
      snapshots: rec?.snapshots ?? 0,
      ...(rec?.newest
        ? { newest: rec.newest, rpoSeconds: Math.max(0, Math.round((now - newest!) / 1000)) }
        : {}),
      ...(drill
        ? {
            drill: {
              time: drill.time,
              ok: drill.ok,
              rtoSeconds: drill.rtoMs !== undefined ? drill.rtoMs / 1000 : undefined,
              rpoSeconds: drill.rpoMs !== undefined ? drill.rpoMs / 1000 : undefined,
            },
          }
        : {}),
    };
    targets.push(th);
    if (!rec) {
      problems.push({
        key: `target-unreachable:${t.name}`,
        severity: 'critical',
        component: t.name,
        summary: `target ${t.name} has not been checked`,
      });
      continue;
    }
    if (rec.error) {
      problems.push({
        key: `target-unreachable:${t.name}`,
        severity: 'critical',
        component: t.name,
        summary: `target ${t.name} cannot be read: ${rec.error}`,
        details: { error: rec.error },
      });
    }
    if (newest === undefined) {
      if (!rec.error)
        problems.push({
          key: `rpo:${t.name}`,
          severity: 'critical',
          component: t.name,
          summary: `target ${t.name} holds no snapshot`,
          details: { threshold: rpoLimit / 1000 },
        });
    } else if (now - newest > rpoLimit) {
      problems.push({
        key: `rpo:${t.name}`,
        severity: 'critical',
        component: t.name,
        summary: `newest snapshot on ${t.name} is ${age(now - newest)} old (threshold ${age(rpoLimit)})`,
        details: {
          newest: rec.newest,
          rpoSeconds: Math.round((now - newest) / 1000),
          thresholdSeconds: rpoLimit / 1000,
        },
      });
    }
    const leftBehind = input.backup?.behind[t.name];
    const missesNewest = newest === undefined ? newestOverall > 0 : newest < newestOverall;
    if (!rec.error && missesNewest && (leftBehind !== undefined || now - newestOverall > BEHIND_GRACE)) {
      problems.push({
        key: `target-behind:${t.name}`,
        severity: 'warning',
        component: t.name,
        summary: `target ${t.name} is behind the others: its newest snapshot is ${newest ? age(newestOverall - newest) : 'missing'}${newest ? ' older' : ''}${leftBehind ? ` (${leftBehind})` : ''}`,
        details: {
          newest: rec.newest,
          newestOverall: new Date(newestOverall).toISOString(),
          ...(leftBehind ? { error: leftBehind } : {}),
        },
      });
    }
    if (drill && !drill.ok) {
      problems.push({
        key: `drill-failed:${t.name}`,
        severity: 'critical',
        component: t.name,
        summary: `restore drill from ${t.name} failed${drill.failed.length ? `: ${drill.failed[0]}${drill.failed.length > 1 ? ` (and ${drill.failed.length - 1} more)` : ''}` : ''}`,
        details: {
          time: drill.time,
          snapshot: drill.snapshot,
          failed: drill.failed.slice(0, 20),
          report: drill.report,
        },
      });
    }
  }

  const b = input.backup;
  if (b) problems.push(...backupProblems(b));
  problems.push(...sourceFailures(config, b, input.jobs ?? []));
  problems.push(...freshnessProblems(config, input, now));

  const drillTimes = Object.values(input.drills).map((d) => Date.parse(d.time));
  if (config.schedule?.drill && drillTimes.length && now - Math.max(...drillTimes) > drillMaxAge) {
    problems.push({
      key: 'drill-overdue',
      severity: 'warning',
      summary: `no restore drill for ${age(now - Math.max(...drillTimes))} (at most ${age(drillMaxAge)} expected)`,
    });
  }

  for (const j of input.jobs ?? []) {
    if (j.lastStatus !== 'failed') continue;
    if (j.job === 'check' && config.targets.some((t) => t.name === j.source)) {
      problems.push({
        key: `check-failed:${j.source}`,
        severity: 'critical',
        component: j.source,
        summary: `the last check of ${j.source} found problems: ${j.lastError ?? 'see regbackup check'}`,
        details: { time: j.lastRun },
      });
    } else if (j.job === 'prune') {
      problems.push({
        key: 'prune-failed',
        severity: 'warning',
        summary: `the last prune failed: ${j.lastError ?? 'see the worker log'}`,
        details: { time: j.lastRun },
      });
    }
  }

  const status: HealthStatus = problems.some((p) => p.severity === 'critical')
    ? 'CRITICAL'
    : problems.length
      ? 'WARNING'
      : 'OK';
  const perf: string[] = [];
  for (const t of targets) {
    if (t.rpoSeconds !== undefined) perf.push(`rpo_${t.name}=${t.rpoSeconds}s;;${rpoLimit / 1000};0`);
    if (t.drill?.rtoSeconds !== undefined)
      perf.push(`drill_rto_${t.name}=${t.drill.rtoSeconds.toFixed(1)}s;;;0`);
  }
  let text: string;
  if (problems.length) {
    const order = [...problems].sort((a, b) =>
      a.severity === b.severity ? 0 : a.severity === 'critical' ? -1 : 1,
    );
    text = order.map((p) => p.summary).join('; ');
  } else {
    const rpos = targets
      .map((t) => `${t.name} ${t.rpoSeconds !== undefined ? age(t.rpoSeconds * 1000) : '?'}`)
      .join(', ');
    const drills = Object.values(input.drills);
    const lastDrill = drills.length ? Math.max(...drills.map((d) => Date.parse(d.time))) : undefined;
    text = `${targets.length} target${targets.length === 1 ? '' : 's'}, newest snapshot age: ${rpos}; ${lastDrill ? `last drill passed ${age(now - lastDrill)} ago` : 'no drill on record'}`;
  }
  return {
    status,
    exitCode: STATUS_EXIT[status],
    checkedAt: new Date(now).toISOString(),
    problems,
    targets,
    ...(b ? { lastBackup: b } : {}),
    summary: `REGBACKUP ${status} - ${text}`,
    perfdata: perf.join(' '),
  };
}

/** The last backup run: failed (no snapshot), a source not read, something else left behind. */
function backupProblems(b: BackupRecord): Problem[] {
  const out: Problem[] = [];
  const by = b.by ? ` ${b.by === 'worker' ? 'by the worker' : b.by}` : '';
  if (!b.ok) {
    out.push({
      key: 'backup-failed',
      severity: 'critical',
      summary: `the last backup${by} (${b.time}) failed: ${b.error ?? `exit status ${b.exitCode}`}`,
      details: { time: b.time, runId: b.runId, error: b.error, exitCode: b.exitCode },
    });
  }
  if (b.ok && b.problems?.length) {
    const count = b.problemCount ?? b.problems.length;
    const more = count > 1 ? ` (and ${count - 1} more)` : '';
    out.push({
      key: 'backup-partial',
      severity: 'warning',
      summary: `the last backup${by} (${b.time}) left something behind: ${b.problems[0]}${more}`,
      details: { time: b.time, snapshot: b.snapshot, exitCode: b.exitCode, problems: b.problems },
    });
  }
  return out;
}

/**
 * Sources that could not be read: by the last run, or by the last run that included them (a later run of
 * other sources only does not clear it; a run that reads the source does).
 */
function sourceFailures(config: Config, b: BackupRecord | undefined, jobs: JobRecord[]): Problem[] {
  const out: Problem[] = [];
  const by = b?.by ? ` ${b.by === 'worker' ? 'by the worker' : b.by}` : '';
  for (const s of b?.failedSources ?? []) {
    const why = b!.sourceErrors?.[s];
    const kept = b!.carried
      ? b!.carried.includes(s)
        ? 'its data of an earlier snapshot was carried over'
        : 'it is not in the snapshot'
      : 'carried over or left out';
    out.push({
      key: `source-failed:${s}`,
      severity: 'critical',
      component: s,
      summary: `the last backup${by} (${b!.time}) could not read source ${s} (${kept})${why ? `: ${why}` : ''}`,
      details: { time: b!.time, snapshot: b!.snapshot, ...(why ? { error: why } : {}) },
    });
  }
  const names = new Set([...config.sources.couchdb, ...config.sources.tarballs].map((s) => s.name));
  for (const j of jobs) {
    if (j.job !== 'backup' || j.lastStatus !== 'failed' || !names.has(j.source)) continue;
    if (b?.failedSources.includes(j.source)) continue;
    if (b && b.time === j.lastRun) continue; // that run failed as a whole: backup-failed says so
    out.push({
      key: `source-failed:${j.source}`,
      severity: 'critical',
      component: j.source,
      summary: `the last backup run that included source ${j.source} (${j.lastRun}) failed for it${j.lastError ? `: ${j.lastError}` : ''}`,
      details: { time: j.lastRun, ...(j.lastError ? { error: j.lastError } : {}) },
    });
  }
  return out;
}

/** Each source's newest freshly read data against its RPO threshold; unreadable newest snapshots. */
function freshnessProblems(config: Config, input: HealthInput, now: number): Problem[] {
  const out: Problem[] = [];
  if (input.freshnessError) {
    out.push({
      key: 'freshness-unknown',
      severity: 'warning',
      summary: `cannot tell how old each source's data is: ${input.freshnessError}`,
      details: { error: input.freshnessError },
    });
  }
  const f = input.freshness;
  if (!f) return out;
  const seen = new Set<string>();
  for (const u of f.unreadable) {
    if (seen.has(u.target)) continue; // the newest unreadable one per target
    seen.add(u.target);
    out.push({
      key: `snapshot-unreadable:${u.target}`,
      severity: 'critical',
      component: u.target,
      summary: `snapshot ${u.snapshot.slice(0, 12)} on ${u.target} cannot be read: ${u.error}`,
      details: { ...u },
    });
  }
  for (const s of [...config.sources.couchdb, ...config.sources.tarballs]) {
    const fr = f.sources[s.name];
    if (!fr) continue; // no snapshot at all on any target: rpo:<target> says so
    const limit = rpoThreshold(config, s.name);
    const carried = fr.carried ? '; the newest snapshot carries it over' : '';
    let summary: string | undefined;
    if (fr.fresh) {
      const ms = now - Date.parse(fr.fresh);
      if (ms > limit)
        summary = `the newest data read from source ${s.name} is ${age(ms)} old (threshold ${age(limit)}; snapshot ${fr.snapshot!.slice(0, 12)} on ${fr.target}${carried})`;
    } else if (fr.never) {
      summary = `no snapshot holds data read from source ${s.name} (never backed up)`;
    } else {
      summary = `the newest data read from source ${s.name} is older than ${fr.olderThan ?? 'every snapshot'} (threshold ${age(limit)}${carried})`;
    }
    if (summary)
      out.push({
        key: `source-rpo:${s.name}`,
        severity: 'critical',
        component: s.name,
        summary,
        details: { ...fr, thresholdSeconds: limit / 1000 },
      });
  }
  return out;
}

/** The report of a check that could not be made (configuration unreadable, state store down). */
export function unknownHealth(why: string, now = Date.now()): HealthReport {
  return {
    status: 'UNKNOWN',
    exitCode: 3,
    checkedAt: new Date(now).toISOString(),
    problems: [],
    targets: [],
    summary: `REGBACKUP UNKNOWN - ${why}`,
    perfdata: '',
  };
}
