import { IntegrityError, messageOf } from '../src/errors.js';
import type { DrillRecord } from '../src/health/records.js';
import { META_PREFIX, type Repository } from '../src/repo/repository.js';
import type { ObjectStore } from '../src/store/types.js';
import { formatBytes, formatDuration } from '../src/util/units.js';
import type { Check } from './types.js';
import { nameTime, parseTimedName } from '../src/repo/format/object-name.js';

/**
 * The report of a restore drill. Stored in the repository (docs/FORMAT.md §12.3: `drills/<time>-<sha256>`, a signed
 * object with magic RBDRIL01, encrypted to the restore and metadata recipients) on every target that can be
 * written, so that `regbackup drills` shows the history from any target with the worker key alone.
 */
export interface DrillCheck extends Check {
  /** restore: the restore library's verification; documents, tarballs, standby: the drill's own. */
  group: 'restore' | 'documents' | 'tarballs' | 'standby';
  /** Could not be made (e.g. the source is unreachable): neither passed nor failed. */
  skipped?: boolean;
}

export interface TargetDrill {
  target: string;
  ok: boolean;
  /** Why the drill of this target stopped early. */
  error?: string;
  snapshot?: { id: string; time: string; host?: string };
  /** Recovery point: age of the newest snapshot on the target when the drill started. */
  rpoMs?: number;
  /** Recovery time: from the start of this target's drill to a verified standby (absent when not reached). */
  rtoMs?: number;
  /** How long this target's drill took (restore and checks), whatever the outcome. */
  durationMs?: number;
  standby?: {
    couchdb: string;
    databases: { source: string; name: string; scratch: string }[];
    tarballs?: string;
  };
  restore?: {
    docs: number;
    files: number;
    bytes: number;
    durationMs: number;
    bytesPerSecond: number;
    fallbackCount: number;
    exitCode: number;
  };
  checks: DrillCheck[];
  cleanup: { ok: boolean; kept: boolean; errors: string[] };
}

export interface DrillReport {
  version: 1;
  kind: 'regbackup-drill';
  /** Random, names the scratch databases. */
  id: string;
  time: string;
  finished: string;
  host: string;
  repository?: string;
  /** `configured`: drill.couchdb; `temporary`: an in-memory server regbackup started. */
  standby: 'configured' | 'temporary';
  ok: boolean;
  targets: TargetDrill[];
  durationMs: number;
}

export interface DrillInfo {
  id: string;
  key: string;
  time: Date;
}

/** Seals the report (worker key) and writes it to every target of `repo`; returns where it went. */
export async function storeDrillReport(
  repo: Repository,
  report: DrillReport,
): Promise<{ key: string; targets: string[]; failed: { target: string; error: string }[] }> {
  const sealed = await repo.sealMeta(
    'drill',
    Buffer.from(JSON.stringify(report)),
    `${nameTime(new Date(report.time))}-`,
  );
  const targets: string[] = [];
  const failed: { target: string; error: string }[] = [];
  await Promise.all(
    repo.targets.map(async (t) => {
      try {
        await t.put(sealed.key, sealed.bytes, { contentType: 'application/octet-stream' });
        targets.push(t.name);
      } catch (err) {
        failed.push({ target: t.name, error: messageOf(err) });
      }
    }),
  );
  return { key: sealed.key, targets: targets.sort(), failed };
}

/** Drill reports on a target, oldest first (from the names: nothing is downloaded). */
export async function listDrills(store: ObjectStore): Promise<DrillInfo[]> {
  const out: DrillInfo[] = [];
  for await (const o of store.list(META_PREFIX.drill)) {
    const info = parseTimedName(META_PREFIX.drill, o.key);
    if (info) out.push(info);
  }
  return out.sort((a, b) => a.time.getTime() - b.time.getTime() || a.id.localeCompare(b.id));
}

export async function loadDrill(repo: Repository, store: ObjectStore, info: DrillInfo): Promise<DrillReport> {
  const body = await repo.readMeta('drill', info.key, store);
  let r: DrillReport;
  try {
    r = JSON.parse(body.toString('utf8')) as DrillReport;
  } catch {
    throw new IntegrityError(`drill report ${info.id} on ${store.name} is not JSON`);
  }
  if (r.version !== 1 || r.kind !== 'regbackup-drill' || !Array.isArray(r.targets))
    throw new IntegrityError(`drill report ${info.id} on ${store.name} has an unknown shape`);
  if (nameTime(new Date(r.time)) !== nameTime(info.time))
    throw new IntegrityError(
      `drill report ${info.id} on ${store.name}: its name says ${info.time.toISOString()} but it ran at ${r.time} (renamed?)`,
    );
  if (r.repository && r.repository !== repo.config.id)
    throw new IntegrityError(
      `drill report ${info.id} on ${store.name} belongs to repository ${r.repository}`,
    );
  return r;
}

/** One record per target for the state store (health, alerts, metrics). */
export function drillRecords(r: DrillReport, reportKey?: string): DrillRecord[] {
  return r.targets.map((t) => ({
    time: r.time,
    target: t.target,
    ok: t.ok,
    ...(t.snapshot ? { snapshot: t.snapshot.id, snapshotTime: t.snapshot.time } : {}),
    ...(t.rpoMs !== undefined ? { rpoMs: t.rpoMs } : {}),
    ...(t.rtoMs !== undefined ? { rtoMs: t.rtoMs } : {}),
    failed: [...(t.error ? [t.error] : []), ...t.checks.filter((c) => !c.ok && !c.skipped).map(checkLine)],
    ...(reportKey ? { report: reportKey } : {}),
  }));
}

function checkLine(c: DrillCheck): string {
  const v =
    c.expected !== undefined || c.actual !== undefined
      ? ` (expected ${String(c.expected ?? '-')}, found ${String(c.actual ?? '-')})`
      : '';
  return `${c.object}: ${c.check}${v}`;
}

/** The report as text for an operator. */
export function formatDrillReport(
  r: DrillReport,
  opts: { stored?: { key: string; targets: string[] } } = {},
): string {
  const out: string[] = [];
  out.push(
    `restore drill ${r.id} at ${r.time}: ${r.ok ? 'PASSED' : 'FAILED'} (${formatDuration(r.durationMs)}, standby: ${r.standby === 'temporary' ? 'temporary in-memory CouchDB' : 'configured drill CouchDB'})`,
  );
  for (const t of r.targets) {
    out.push('');
    const rto =
      t.rtoMs !== undefined
        ? `RTO ${formatDuration(t.rtoMs)}`
        : `RTO not reached${t.durationMs !== undefined ? ` (gave up after ${formatDuration(t.durationMs)})` : ''}`;
    const rpo = t.rpoMs !== undefined ? `RPO ${formatDuration(t.rpoMs)}` : 'RPO -';
    out.push(
      `target ${t.target}: ${t.ok ? 'PASSED' : 'FAILED'}  ${rto}  ${rpo}${t.snapshot ? `  snapshot ${t.snapshot.id.slice(0, 12)} (${t.snapshot.time})` : ''}`,
    );
    if (t.error) out.push(`  ERROR ${t.error}`);
    if (t.restore) {
      out.push(
        `  restored ${t.restore.docs} documents and ${t.restore.files} tarballs (${formatBytes(t.restore.bytes)}) in ${formatDuration(t.restore.durationMs)}${t.restore.bytesPerSecond ? `, ${formatBytes(t.restore.bytesPerSecond)}/s` : ''}${t.restore.fallbackCount ? `; ${t.restore.fallbackCount} blobs read from another target` : ''}`,
      );
    }
    for (const c of t.checks) {
      const mark = c.skipped ? 'SKIP' : c.ok ? 'OK  ' : 'FAIL';
      out.push(`  ${mark} [${c.group}] ${checkLine(c)}`);
      for (const d of c.ok && !c.skipped ? (c.details ?? []).slice(0, 2) : (c.details ?? []).slice(0, 10))
        out.push(`         ${d}`);
    }
    if (!t.cleanup.ok) out.push(`  cleanup FAILED: ${t.cleanup.errors.join('; ')}`);
    else if (t.cleanup.kept)
      out.push(
        `  scratch data kept (drill.keep): ${t.standby?.databases.map((d) => d.scratch).join(', ') ?? ''}${t.standby?.tarballs ? `, ${t.standby.tarballs}` : ''}`,
      );
  }
  if (opts.stored)
    out.push('', `report stored as ${opts.stored.key} on ${opts.stored.targets.join(', ') || 'no target'}`);
  return out.join('\n');
}
