import type { BackupPart, BackupPlan } from '../src/backup/plan.js';
import type { PartOutcome } from '../src/backup/parts.js';
import type { StreamRef } from '../src/repo/stream-ref.js';

/**
 * The jobs. `backup`, `drill`, `prune` and `check` are what the schedule runs (and `regbackup jobs run`);
 * with BullMQ a backup run continues as a flow: its parts (`backup-part`, stage 1: one per CouchDB
 * database) under a `backup-stage2` job, which then adds the tarball parts (stage 2, they need stage 1's
 * expectations) under a `backup-commit` job that writes the snapshot once every part is done.
 */
export const SCHEDULED_JOBS = ['backup', 'drill', 'prune', 'check'] as const;
export type ScheduledJob = (typeof SCHEDULED_JOBS)[number];
export type JobName = ScheduledJob | 'backup-part' | 'backup-stage2' | 'backup-commit';

export interface BackupJobData {
  /** Only these sources (default: all). */
  sources?: string[];
  trigger?: 'schedule' | 'manual';
}

export interface DrillJobData {
  targets?: string[];
  trigger?: 'schedule' | 'manual';
}

export interface MaintenanceJobData {
  trigger?: 'schedule' | 'manual';
}

/** What every job of one backup run carries: the plan, the locks it holds, when it started. */
export interface RunData {
  plan: BackupPlan;
  /** The run's locks (one per source); their owner is plan.runId. */
  locks: string[];
  startedAt: number;
}

export interface PartJobData extends RunData {
  part: BackupPart;
  stage: 1 | 2;
  expectations?: StreamRef[];
}

export type Stage2JobData = RunData;

export interface CommitJobData extends RunData {
  stage1: PartOutcome[];
}

/** What a job returns (kept by BullMQ as the job's return value; printed by `regbackup jobs`). */
export interface JobSummary {
  job: JobName;
  status: 'ok' | 'partial' | 'failed' | 'skipped' | 'queued';
  message: string;
  [key: string]: unknown;
}
