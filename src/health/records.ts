import os from 'node:os';
import type { Config } from '../config/schema.js';
import { messageOf } from '../errors.js';
import { listSnapshots } from '../repo/snapshot.js';
import { openStore } from '../store/index.js';
import type { ObjectStore } from '../store/types.js';
import type { StateStore } from './state.js';

/**
 * The records the worker keeps in its state store (state.ts), and the functions that write them. Keys:
 *
 *   job:<job>:<source>   JobRecord     the last run of a job for a source (backup per source, drill per target)
 *   backup:last          BackupRecord  the last backup run
 *   drill:<target>       DrillRecord   the last drill of a target
 *   target:<target>      TargetRecord  the newest snapshot seen on a target
 *   running:<id>         RunningRecord a job running in an in-process worker
 *   incident:<dedupKey>  (alerts)      an open alert incident
 *   list failures        FailureRecord the last failures (newest first)
 *   counter bytes:<t>    new/dedup/stored bytes written per target, summed over runs
 */
export type JobStatus = 'ok' | 'partial' | 'failed' | 'interrupted' | 'skipped';

export interface JobRecord {
  job: string;
  source: string;
  lastRun: string;
  lastStatus: JobStatus;
  lastError?: string;
  lastDurationMs?: number;
  /** The last run that succeeded (ok or partial with this source done). */
  lastSuccess?: string;
  lastSuccessDurationMs?: number;
  runs: number;
  failures: number;
}

export interface BackupRecord {
  time: string;
  runId?: string;
  ok: boolean;
  exitCode?: number;
  /** Why the run failed as a whole (no snapshot written). */
  error?: string;
  snapshot?: string;
  /** Targets the run left behind, with why. */
  behind: Record<string, string>;
  /** Sources that could not be read (carried over from an earlier snapshot, or left out). */
  failedSources: string[];
  /** Why each of them could not be read. */
  sourceErrors?: Record<string, string>;
  /** Those of them carried over into the snapshot (the others are not in it). */
  carried?: string[];
  /** What else the run left behind (its first error findings): the run was partial. */
  problems?: string[];
  /** How many error findings there were in all. */
  problemCount?: number;
  /** Who ran it: `worker`, or `by hand` (the CLI, cron). */
  by?: string;
  durationMs?: number;
}

export interface DrillRecord {
  time: string;
  target: string;
  ok: boolean;
  snapshot?: string;
  snapshotTime?: string;
  rpoMs?: number;
  rtoMs?: number;
  /** The failed checks (or the error), one line each. */
  failed: string[];
  /** The drill report's key in the repository. */
  report?: string;
}

export interface TargetRecord {
  checked: string;
  /** Time of the newest snapshot on the target. */
  newest?: string;
  newestId?: string;
  snapshots: number;
  /** The target could not be listed. */
  error?: string;
}

export interface RunningRecord {
  id: string;
  job: string;
  source?: string;
  started: string;
  host: string;
  pid: number;
}

export interface FailureRecord {
  time: string;
  job: string;
  source?: string;
  id?: string;
  error: string;
  attempts?: number;
}

/** Records the end of a job for one source (one record per job and source). */
export async function recordJob(
  state: StateStore,
  r: { job: string; source: string; status: JobStatus; durationMs?: number; error?: string; time?: Date },
): Promise<void> {
  const key = `job:${r.job}:${r.source}`;
  const prev = await state.get<JobRecord>(key);
  const time = (r.time ?? new Date()).toISOString();
  const success = r.status === 'ok' || r.status === 'partial';
  const rec: JobRecord = {
    job: r.job,
    source: r.source,
    lastRun: time,
    lastStatus: r.status,
    ...(r.error ? { lastError: r.error } : {}),
    ...(r.durationMs !== undefined ? { lastDurationMs: r.durationMs } : {}),
    ...(success
      ? { lastSuccess: time, lastSuccessDurationMs: r.durationMs }
      : prev?.lastSuccess
        ? { lastSuccess: prev.lastSuccess, lastSuccessDurationMs: prev.lastSuccessDurationMs }
        : {}),
    runs: (prev?.runs ?? 0) + 1,
    failures: (prev?.failures ?? 0) + (r.status === 'failed' ? 1 : 0),
  };
  await state.set(key, rec);
  if (r.status === 'failed')
    await state.push(
      'failures',
      { time, job: r.job, source: r.source, error: r.error ?? 'failed' } satisfies FailureRecord,
      50,
    );
}

export async function readRecords(state: StateStore): Promise<{
  jobs: JobRecord[];
  backup?: BackupRecord;
  drills: Record<string, DrillRecord>;
  targets: Record<string, TargetRecord>;
  running: RunningRecord[];
}> {
  const [jobs, backup, drills, targets, running] = await Promise.all([
    state.entries<JobRecord>('job:'),
    state.get<BackupRecord>('backup:last'),
    state.entries<DrillRecord>('drill:'),
    state.entries<TargetRecord>('target:'),
    state.entries<RunningRecord>('running:'),
  ]);
  return {
    jobs: jobs.map(([, v]) => v),
    backup,
    drills: Object.fromEntries(drills.map(([k, v]) => [k.slice('drill:'.length), v])),
    targets: Object.fromEntries(targets.map(([k, v]) => [k.slice('target:'.length), v])),
    running: running.map(([, v]) => v),
  };
}

/**
 * Looks at every target (names only: no key is needed, nothing is decrypted) and records its newest
 * snapshot, or that it cannot be listed.
 */
export async function probeTargets(
  config: Config,
  state: StateStore | undefined,
  stores?: ObjectStore[],
): Promise<Record<string, TargetRecord>> {
  const all = stores ?? config.targets.map((t) => openStore(t, { retry: { attempts: 2 } }));
  const out: Record<string, TargetRecord> = {};
  await Promise.all(
    config.targets.map(async (t) => {
      const store = all.find((s) => s.name === t.name) ?? openStore(t);
      const checked = new Date().toISOString();
      let rec: TargetRecord;
      try {
        const list = await listSnapshots(store);
        const last = list[list.length - 1];
        rec = {
          checked,
          snapshots: list.length,
          ...(last ? { newest: last.time.toISOString(), newestId: last.id } : {}),
        };
      } catch (err) {
        const prev = await state?.get<TargetRecord>(`target:${t.name}`);
        rec = {
          checked,
          snapshots: prev?.snapshots ?? 0,
          ...(prev?.newest ? { newest: prev.newest, newestId: prev.newestId } : {}),
          error: messageOf(err),
        };
      }
      out[t.name] = rec;
      await state?.set(`target:${t.name}`, rec);
    }),
  );
  return out;
}

export function runningRecord(id: string, job: string, source?: string): RunningRecord {
  return {
    id,
    job,
    ...(source ? { source } : {}),
    started: new Date().toISOString(),
    host: os.hostname(),
    pid: process.pid,
  };
}
