import type { BackupResult } from '../backup/parts.js';
import type { Config } from '../config/schema.js';
import { ExitCode, messageOf, RegbackupError } from '../errors.js';
import type { Logger } from '../log.js';
import { openStore } from '../store/index.js';
import type { ObjectStore } from '../store/types.js';
import { evaluateHealth, type HealthReport } from './evaluate.js';
import { probeFreshness, type FreshnessReport } from './freshness.js';
import { probeTargets, readRecords, recordJob, type BackupRecord, type DrillRecord } from './records.js';
import { fileStateStore, openStateStoreChecked, type StateStore } from './state.js';

export * from './evaluate.js';
export * from './freshness.js';
export * from './records.js';
export * from './state.js';

/**
 * Looks at the targets now — the newest snapshots, and in them how old each source's data is — and
 * evaluates health from that and the recorded outcomes of the last runs.
 */
export async function checkHealth(
  config: Config,
  state: StateStore,
  opts: { stores?: ObjectStore[]; now?: number } = {},
): Promise<HealthReport> {
  const stores = opts.stores ?? config.targets.map((t) => openStore(t, { retry: { attempts: 2 } }));
  const targets = await probeTargets(config, state, stores);
  const records = withFallback(await readRecords(state), await fallbackRecords(config, state));
  const reachable = stores.filter((s) => targets[s.name] && !targets[s.name]!.error);
  let freshness: FreshnessReport | undefined;
  let freshnessError: string | undefined;
  if (reachable.length) {
    try {
      freshness = await probeFreshness(config, reachable);
    } catch (err) {
      freshnessError = messageOf(err);
    }
  }
  return evaluateHealth(
    config,
    {
      targets,
      ...(records.backup ? { backup: records.backup } : {}),
      drills: records.drills,
      jobs: records.jobs,
      ...(freshness ? { freshness } : {}),
      ...(freshnessError ? { freshnessError } : {}),
    },
    opts.now ?? Date.now(),
  );
}

type Records = Awaited<ReturnType<typeof readRecords>>;

/** With Redis as the state store: what runs by hand recorded in the cache directory while Redis was down. */
async function fallbackRecords(config: Config, state: StateStore): Promise<Records | undefined> {
  if (state.kind !== 'redis') return undefined;
  const file = fileStateStore(config);
  try {
    return await readRecords(file);
  } finally {
    await file.close();
  }
}

/** The run records of both places: the newest backup run, and the newest record of each job and source. */
function withFallback(main: Records, fallback?: Records): Records {
  if (!fallback) return main;
  const backup =
    main.backup && fallback.backup
      ? Date.parse(fallback.backup.time) > Date.parse(main.backup.time)
        ? fallback.backup
        : main.backup
      : (main.backup ?? fallback.backup);
  const jobs = new Map(main.jobs.map((j) => [`${j.job}:${j.source}`, j]));
  for (const j of fallback.jobs) {
    const have = jobs.get(`${j.job}:${j.source}`);
    if (!have || Date.parse(j.lastRun) > Date.parse(have.lastRun)) jobs.set(`${j.job}:${j.source}`, j);
  }
  return { ...main, ...(backup ? { backup } : {}), jobs: [...jobs.values()] };
}

/**
 * Records a backup run made outside the worker (by hand, from cron) where `check-health` and the worker
 * read it: the state store, or — when it is Redis and Redis does not answer — the state file in the cache
 * directory (check-health reads both: the newest record counts). Recording never changes the run's outcome:
 * a failure to record is logged as an error.
 */
export async function recordBackupByHand(
  config: Config,
  r: { result?: BackupResult; error?: unknown; started: number; sources: string[] },
  log: Logger,
): Promise<void> {
  let state: StateStore;
  try {
    state = await openStateStoreChecked(config);
  } catch (err) {
    log.warn(
      { err: messageOf(err) },
      'cannot reach the state store (queue.redis); recording the outcome of this run in the cache directory',
    );
    state = fileStateStore(config);
  }
  try {
    await recordBackup(state, { ...r, by: 'by hand' });
  } catch (err) {
    log.error(
      { err: messageOf(err) },
      'cannot record the outcome of this run: check-health will not see it (the run itself is unaffected)',
    );
  } finally {
    await state
      .close()
      .catch((err: unknown) => log.debug({ err: messageOf(err) }, 'closing the state store'));
  }
}

/** Error findings kept in a run's record (for the health summary); the count says how many there were. */
const MAX_PROBLEMS = 10;

/** Records a finished backup run: the run, one job record per source, bytes per target. */
export async function recordBackup(
  state: StateStore,
  r: { result?: BackupResult; error?: unknown; started: number; sources: string[]; by?: string },
): Promise<BackupRecord> {
  const durationMs = Date.now() - r.started;
  const time = new Date();
  const by = r.by ?? 'worker';
  if (!r.result) {
    const rec: BackupRecord = {
      time: time.toISOString(),
      ok: false,
      error: messageOf(r.error),
      ...(r.error instanceof RegbackupError ? { exitCode: r.error.exitCode } : {}),
      behind: {},
      failedSources: [],
      by,
      durationMs,
    };
    // Issued together: the state file is rewritten once for all of them, not once each.
    await Promise.all([
      state.set('backup:last', rec),
      ...r.sources.map((s) =>
        recordJob(state, { job: 'backup', source: s, status: 'failed', durationMs, error: rec.error, time }),
      ),
    ]);
    return rec;
  }
  const res = r.result;
  const behind = Object.fromEntries(
    res.targets.filter((t) => t.status !== 'ok').map((t) => [t.name, t.error ?? 'left behind']),
  );
  const carried = res.sources.filter((s) => s.carriedFrom).map((s) => s.name);
  const failedSources = [...carried];
  const sourceErrors: Record<string, string> = {};
  // A source that could not be read and had no previous entry is not among `sources`: it is left out.
  for (const f of res.findings) {
    if (f.code !== 'source-failed') continue;
    if (!failedSources.includes(f.source)) failedSources.push(f.source);
    sourceErrors[f.source] ??= f.message;
  }
  const problems = res.findings
    .filter((f) => f.severity === 'error' && f.code !== 'source-failed')
    .map((f) => `${f.source}: ${f.message}`);
  const rec: BackupRecord = {
    time: time.toISOString(),
    runId: res.runId,
    ok: Boolean(res.snapshot),
    exitCode: res.exitCode,
    ...(res.snapshot ? { snapshot: res.snapshot.id } : { error: 'no snapshot was written' }),
    behind,
    failedSources,
    sourceErrors,
    carried,
    ...(problems.length ? { problems: problems.slice(0, MAX_PROBLEMS), problemCount: problems.length } : {}),
    by,
    durationMs,
  };
  const st = res.stats;
  // Issued together: the state file is rewritten once or twice for all of them (each job record reads its
  // previous one first), not once each.
  await Promise.all([
    state.set('backup:last', rec),
    ...r.sources.map((s) => {
      const failed = failedSources.includes(s);
      const why = res.findings.find((f) => f.source === s && f.severity === 'error')?.message;
      return recordJob(state, {
        job: 'backup',
        source: s,
        status: failed ? 'failed' : res.exitCode === ExitCode.ok ? 'ok' : 'partial',
        durationMs,
        time,
        ...(failed ? { error: why ?? 'source could not be read' } : {}),
      });
    }),
    ...res.targets
      .filter((t) => t.status === 'ok')
      .map((t) =>
        state.incr(`bytes:${t.name}`, {
          newBytes: st.newBytes ?? 0,
          dedupBytes: st.dedupBytes ?? 0,
          storedBytes: st.storedBytes ?? 0,
          written: t.bytesWritten,
        }),
      ),
  ]);
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
