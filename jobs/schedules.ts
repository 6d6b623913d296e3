import cron from 'node-cron';
import type { Config } from '../src/config/schema.js';
import { SCHEDULED_JOBS, type ScheduledJob } from './types.js';

/**
 * The `schedule:` of the configuration as a list of job schedules. The same list becomes node-cron tasks
 * (in-process driver) or BullMQ job schedulers (queue driver), with the configured time zone.
 */
export interface Schedule {
  /** The scheduler's ID: `schedule-<job>` (BullMQ de-duplicates schedulers by it). */
  id: string;
  job: ScheduledJob;
  pattern: string;
  timezone: string;
}

export function schedulesOf(config: Config): Schedule[] {
  const s = config.schedule;
  if (!s) return [];
  const tz = s.timezone;
  return SCHEDULED_JOBS.flatMap((job) => {
    const pattern = s[job];
    return pattern ? [{ id: `schedule-${job}`, job, pattern: pattern.trim(), timezone: tz }] : [];
  });
}

/** The next `n` times a pattern fires after now. */
export function nextRuns(s: Pick<Schedule, 'pattern' | 'timezone'>, n = 1): Date[] {
  const task = cron.createTask(s.pattern, () => undefined, { timezone: s.timezone });
  try {
    return task.getNextRuns(n);
  } finally {
    void task.destroy();
  }
}
