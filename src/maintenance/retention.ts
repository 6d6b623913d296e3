import { bySnapshotTime } from '../repo/snapshot.js';

/**
 * Retention (`regbackup forget`): which snapshots to keep. Snapshots are grouped by the set of sources they
 * hold; within a group, keep the newest `last` snapshots, and the newest snapshot of each of the last
 * `hourly` hours, `daily` days, `weekly` ISO weeks, `monthly` months and `yearly` years that have one
 * (periods in UTC). Everything else in the group goes. Like restic's policy: a snapshot kept for several
 * reasons lists them all.
 */
export interface RetentionPolicy {
  last: number;
  hourly: number;
  daily: number;
  weekly: number;
  monthly: number;
  yearly: number;
}

export interface RetentionInput {
  id: string;
  time: Date;
  /** The names of the sources the snapshot holds. */
  sources: string[];
}

export interface RetentionDecision {
  id: string;
  time: Date;
  group: string;
  keep: boolean;
  /** Why it is kept: "last", "hourly 2026-11-26T04", … */
  reasons: string[];
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** ISO 8601 week (year and week number) of a date, in UTC. */
export function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const year = t.getUTCFullYear();
  const week = Math.ceil(((t.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 + 1) / 7);
  return `${year}-W${pad(week)}`;
}

const BUCKETS: { key: keyof RetentionPolicy; of: (d: Date) => string }[] = [
  {
    key: 'hourly',
    of: (d) =>
      `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}`,
  },
  { key: 'daily', of: (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` },
  { key: 'weekly', of: isoWeek },
  { key: 'monthly', of: (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}` },
  { key: 'yearly', of: (d) => String(d.getUTCFullYear()) },
];

export function groupOf(sources: readonly string[]): string {
  return [...sources].sort().join(',');
}

export function applyRetention(
  snapshots: readonly RetentionInput[],
  policy: RetentionPolicy,
): RetentionDecision[] {
  const groups = new Map<string, RetentionInput[]>();
  for (const s of snapshots) {
    const g = groupOf(s.sources);
    (groups.get(g) ?? groups.set(g, []).get(g)!).push(s);
  }
  const out: RetentionDecision[] = [];
  for (const [group, list] of groups) {
    // Newest first.
    const sorted = [...list].sort((a, b) => bySnapshotTime(b, a));
    const decisions = sorted.map((s) => ({
      id: s.id,
      time: s.time,
      group,
      keep: false,
      reasons: [] as string[],
    }));
    decisions.forEach((d, i) => {
      if (i < policy.last) d.reasons.push('last');
    });
    for (const { key, of } of BUCKETS) {
      const n = policy[key];
      if (n <= 0) continue;
      const seen = new Set<string>();
      for (const d of decisions) {
        const b = of(d.time);
        if (seen.has(b)) continue;
        if (seen.size >= n) break;
        seen.add(b);
        d.reasons.push(`${key} ${b}`);
      }
    }
    for (const d of decisions) d.keep = d.reasons.length > 0;
    // A policy that keeps nothing would forget every snapshot: keep the newest one in any case.
    if (decisions.length && !decisions.some((d) => d.keep)) {
      decisions[0]!.keep = true;
      decisions[0]!.reasons.push('newest (the policy keeps nothing)');
    }
    out.push(...decisions);
  }
  return out.sort((a, b) => a.time.getTime() - b.time.getTime());
}
