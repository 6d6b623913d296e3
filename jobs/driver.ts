import type { JobSummary, ScheduledJob } from './types.js';

/** How jobs are driven: in this process with node-cron, or through BullMQ. */
export interface Driver {
  readonly kind: 'in-process' | 'bullmq';
  start(): Promise<void>;
  /** Runs a job now: in this process (in-process driver), or queued for any worker (BullMQ). */
  trigger(job: ScheduledJob, data?: Record<string, unknown>): Promise<JobSummary>;
  /** Stops taking jobs; lets running ones finish for `graceMs`, then interrupts them (BullMQ hands them back). */
  stop(graceMs: number): Promise<void>;
  /** Interrupts the running jobs now (a second SIGTERM while stopping). */
  interrupt(): void;
  /** Jobs by state. */
  queueCounts(): Promise<Record<string, number>>;
}
