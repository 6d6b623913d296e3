import type { BackupResult } from '../backup/parts.js';
import type { Config } from '../config/schema.js';
import { messageOf } from '../errors.js';
import type { ObjectStore } from '../store/types.js';
import { evaluateHealth, type HealthReport } from './evaluate.js';
import { probeTargets, readRecords, recordJob, type BackupRecord, type DrillRecord } from './records.js';
import type { StateStore } from './state.js';

export * from './evaluate.js';
export * from './records.js';
export * from './state.js';

/** Looks at the targets now and evaluates health from them and the recorded job outcomes. */
export async function checkHealth(
  config: Config,
  state: StateStore,
  opts: { stores?: ObjectStore[]; now?: number } = {},
): Promise<HealthReport> {
  const targets = await probeTargets(config, state, opts.stores);
  const records = await readRecords(state);
  return evaluateHealth(
    config,
    { targets, backup: records.backup, drills: records.drills },
    opts.now ?? Date.now(),
  );
}

/** Records a finished backup run: the run, one job record per source, bytes per target. */
export async function recordBackup(
  state: StateStore,
  r: { result?: BackupResult; error?: unknown; started: number; sources: string[] },
): Promise<BackupRecord> {
  const durationMs = Date.now() - r.started;
  const time = new Date();
  if (!r.result) {
    const rec: BackupRecord = {
      time: time.toISOString(),
      ok: false,
      error: messageOf(r.error),
      behind: {},
      failedSources: [],
      durationMs,
    };
    await state.set('backup:last', rec);
    for (const s of r.sources)
      await recordJob(state, {
        job: 'backup',
        source: s,
        status: 'failed',
        durationMs,
        error: rec.error,
        time,
      });
    return rec;
  }
  const res = r.result;
  const behind = Object.fromEntries(
    res.targets.filter((t) => t.status !== 'ok').map((t) => [t.name, t.error ?? 'left behind']),
  );
  const failedSources = res.sources.filter((s) => s.carriedFrom).map((s) => s.name);
  // A source whose listing failed entirely is not among `sources` when it had no previous entry.
  for (const f of res.findings)
    if (f.code === 'source-failed' && !failedSources.includes(f.source)) failedSources.push(f.source);
  const rec: BackupRecord = {
    time: time.toISOString(),
    runId: res.runId,
    ok: Boolean(res.snapshot),
    exitCode: res.exitCode,
    ...(res.snapshot ? { snapshot: res.snapshot.id } : { error: 'no snapshot was written' }),
    behind,
    failedSources,
    durationMs,
  };
  await state.set('backup:last', rec);
  for (const s of r.sources) {
    const failed = failedSources.includes(s);
    const why = res.findings.find((f) => f.source === s && f.severity === 'error')?.message;
    await recordJob(state, {
      job: 'backup',
      source: s,
      status: failed ? 'failed' : res.exitCode === 0 ? 'ok' : 'partial',
      durationMs,
      time,
      ...(failed ? { error: why ?? 'source could not be read' } : {}),
    });
  }
  const st = res.stats;
  for (const t of res.targets) {
    if (t.status !== 'ok') continue;
    await state.incr(`bytes:${t.name}`, {
      newBytes: st.newBytes ?? 0,
      dedupBytes: st.dedupBytes ?? 0,
      storedBytes: st.storedBytes ?? 0,
      written: t.bytesWritten,
    });
  }
  return rec;
}

/** Records a drill's outcome per target. */
export async function recordDrill(
  state: StateStore,
  drills: DrillRecord[],
  durationMs?: number,
): Promise<void> {
  for (const d of drills) {
    await state.set(`drill:${d.target}`, d);
    await recordJob(state, {
      job: 'drill',
      source: d.target,
      status: d.ok ? 'ok' : 'failed',
      durationMs: d.rtoMs ?? durationMs,
      time: new Date(d.time),
      ...(d.ok ? {} : { error: d.failed[0] ?? 'drill failed' }),
    });
  }
}
