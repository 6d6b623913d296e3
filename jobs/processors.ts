import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { checkAndAlert } from '../src/alerts/index.js';
import { commitBackup, runPart, type BackupResult, type PartOutcome } from '../src/backup/parts.js';
import { openSession, planBackup, selectedSources } from '../src/backup/plan.js';
import { runBackup } from '../src/backup/run.js';
import type { Config } from '../src/config/schema.js';
import { InterruptedError, KeyError, messageOf } from '../src/errors.js';
import { recordBackup, recordDrill, recordJob } from '../src/health/index.js';
import type { Logger } from '../src/log.js';
import { checkTarget } from '../src/maintenance/check.js';
import { forget } from '../src/maintenance/forget.js';
import { prune } from '../src/maintenance/prune.js';
import { loadRestoreIdentity, loadWorkerKey } from '../src/repo/keys.js';
import { Repository } from '../src/repo/repository.js';
import { runDrill } from '../restore/drill.js';
import type { JobEnv } from './env.js';
import { keepRenewing, LOCK_TTL, renewLease, sourceLockKeys } from './locks.js';
import { acquireSlot } from './slots.js';
import type {
  BackupJobData,
  CommitJobData,
  DrillJobData,
  JobSummary,
  PartJobData,
  RunData,
} from './types.js';

/**
 * What each job does — the one code path that both drivers run: the in-process driver (node-cron) calls
 * these directly, the BullMQ driver from its worker. Every job takes a cache slot (slots.ts) for its local
 * cache, holds a lock so that two runs for the same source never overlap (locks.ts), records its outcome in
 * the state store, and re-evaluates health and alerts when it ends.
 */
export interface JobContext {
  env: JobEnv;
  /** The job's ID (BullMQ's, or the in-process driver's). */
  id: string;
  signal: AbortSignal;
  logger: Logger;
}

/** Time to live of a lock; renewed every third of it while a job of its owner runs. */
export { LOCK_TTL };

/** The configuration with the job's cache slot as its cache root. */
function withCache(config: Config, root: string): Config {
  return { ...config, cache: root };
}

/** Runs `fn` with a cache slot of its own. */
export async function withSlot<T>(env: JobEnv, fn: (root: string) => Promise<T>): Promise<T> {
  const slot = acquireSlot(env.cacheRoot);
  try {
    return await fn(slot.root);
  } finally {
    slot.release();
  }
}

/** Keeps `owner`'s locks while `fn` runs (renewing them); a lost lock is logged (data stays safe: writers never coordinate). */
export async function holding<T>(
  ctx: JobContext,
  keys: string[],
  owner: string,
  fn: () => Promise<T>,
): Promise<T> {
  const lost = () =>
    ctx.logger.warn(
      { keys, owner },
      'a lock of this run is held by another run now (it expired meanwhile); carrying on',
    );
  await renewLease(ctx.env.locks, keys, owner, lost);
  const stop = keepRenewing(ctx.env.locks, keys, owner, lost, (err: unknown) =>
    ctx.logger.warn({ err: messageOf(err) }, 'renewing a lock failed'),
  );
  try {
    return await fn();
  } finally {
    stop();
  }
}

function lockKeys(config: Config, sources?: string[]): { names: string[]; keys: string[] } {
  const { couch, tarballs } = selectedSources(config, sources);
  const names = [...couch, ...tarballs].map((s) => s.name);
  return { names, keys: sourceLockKeys(names) };
}

/** Health and alerts after a job (never fails the job). */
export async function afterJob(ctx: JobContext): Promise<void> {
  try {
    const { health, alerts } = await checkAndAlert(ctx.env.config, ctx.env.state, ctx.logger, {
      stores: ctx.env.stores,
      manager: ctx.env.alerts,
    });
    ctx.env.health = health;
    if (alerts.triggered.length || alerts.resolved.length)
      ctx.logger.info({ triggered: alerts.triggered, resolved: alerts.resolved }, 'alerts updated');
  } catch (err) {
    ctx.logger.error({ err: messageOf(err) }, 'checking health after the job failed');
  }
}

function backupSummary(r: BackupResult): JobSummary {
  const behind = r.targets.filter((t) => t.status !== 'ok').map((t) => t.name);
  return {
    job: 'backup',
    status: r.exitCode === 0 ? 'ok' : 'partial',
    message: r.snapshot
      ? `snapshot ${r.snapshot.id.slice(0, 12)}${behind.length ? `; behind: ${behind.join(', ')}` : ''}`
      : 'no snapshot',
    runId: r.runId,
    snapshot: r.snapshot?.id,
    exitCode: r.exitCode,
    targets: r.targets.map((t) => ({ name: t.name, status: t.status })),
    findings: r.findings.length,
    durationMs: r.stats.durationMs,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Backup, in this process (the in-process driver): lock, plan, parts, commit — src/backup/run.ts.

export async function backupInProcess(ctx: JobContext, data: BackupJobData): Promise<JobSummary> {
  const { env } = ctx;
  const { names, keys } = lockKeys(env.config, data.sources);
  const owner = `run-${randomBytes(6).toString('hex')}`;
  if (!(await env.locks.acquire(keys, owner, LOCK_TTL))) {
    const held = await env.locks.held();
    const msg = `skipped: a backup of ${names.filter((n) => held[`source:${n}`]).join(', ')} is still running`;
    ctx.logger.warn(msg);
    for (const n of names) await recordJob(env.state, { job: 'backup', source: n, status: 'skipped' });
    return { job: 'backup', status: 'skipped', busy: true, message: msg };
  }
  const started = Date.now();
  try {
    const result = await holding(ctx, keys, owner, () =>
      withSlot(env, (root) =>
        runBackup(withCache(env.config, root), {
          sources: data.sources,
          stores: env.stores,
          signal: ctx.signal,
          logger: ctx.logger,
        }),
      ),
    );
    const finishedAt = new Date().toISOString();
    await recordBackup(env.state, { result, started, sources: names });
    return { ...backupSummary(result), startedAt: new Date(started).toISOString(), finishedAt };
  } catch (err) {
    if (!(err instanceof InterruptedError))
      await recordBackup(env.state, { error: err, started, sources: names });
    throw err;
  } finally {
    await env.locks.release(keys, owner);
    await afterJob(ctx);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Backup, shared out (the BullMQ driver): start (lock + plan), parts, commit, each a job.

/** Takes the run's locks and plans it; undefined when another run of one of its sources holds a lock. */
export async function startRun(ctx: JobContext, data: BackupJobData): Promise<RunData | undefined> {
  const { env } = ctx;
  const { keys } = lockKeys(env.config, data.sources);
  const owner = `run-${randomBytes(6).toString('hex')}`;
  if (!(await env.locks.acquire(keys, owner, LOCK_TTL))) return undefined;
  try {
    const plan = await planBackup(env.config, {
      sources: data.sources,
      tarballShards: env.config.queue?.tarballShards,
      logger: ctx.logger,
      stores: env.stores,
    });
    plan.runId = owner;
    return { plan, locks: keys, startedAt: Date.now() };
  } catch (err) {
    await env.locks.release(keys, owner);
    throw err;
  }
}

/** One part of a run, in its own session (flushed: the commit may run in another process). */
export async function backupPart(ctx: JobContext, data: PartJobData): Promise<PartOutcome> {
  const { env } = ctx;
  return holding(ctx, data.locks, data.plan.runId, () =>
    withSlot(env, async (root) => {
      const session = await openSession(withCache(env.config, root), data.plan.targets, {
        stores: env.stores,
        signal: ctx.signal,
      });
      try {
        return await runPart(env.config, data.plan, data.part, session, {
          flush: true,
          signal: ctx.signal,
          logger: ctx.logger,
          expectations: data.expectations,
        });
      } finally {
        await session.close();
      }
    }),
  );
}

/** The commit of a run: one snapshot from every part's outcome; records it and releases the run's locks. */
export async function commitRun(
  ctx: JobContext,
  data: CommitJobData,
  stage2: PartOutcome[],
): Promise<JobSummary> {
  const { env } = ctx;
  const names = data.plan.sources.map((s) => s.name);
  const result = await holding(ctx, data.locks, data.plan.runId, () =>
    withSlot(env, async (root) => {
      const session = await openSession(withCache(env.config, root), data.plan.targets, {
        stores: env.stores,
        signal: ctx.signal,
      });
      try {
        return await commitBackup(
          env.config,
          data.plan,
          [...data.stage1, ...stage2],
          session,
          ctx.logger,
          ctx.signal,
        );
      } finally {
        await session.close();
      }
    }),
  );
  const finishedAt = new Date().toISOString();
  await recordBackup(env.state, { result, started: data.startedAt, sources: names });
  await env.locks.release(data.locks, data.plan.runId);
  await afterJob(ctx);
  return {
    ...backupSummary(result),
    startedAt: new Date(data.startedAt).toISOString(),
    finishedAt,
    parts: data.plan.stage1.length + data.plan.stage2.length,
  };
}

/** A run that failed for good (a part or the commit used up its attempts): recorded, locks released. */
export async function failRun(ctx: JobContext, data: RunData, err: unknown): Promise<void> {
  await recordBackup(ctx.env.state, {
    error: err,
    started: data.startedAt,
    sources: data.plan.sources.map((s) => s.name),
  });
  await ctx.env.locks.release(data.locks, data.plan.runId);
  await afterJob(ctx);
}

// ---------------------------------------------------------------------------------------------------------
// Drill, prune (forget + prune), check.

export async function drillJob(ctx: JobContext, data: DrillJobData): Promise<JobSummary> {
  const { env } = ctx;
  const owner = `drill-${ctx.id}`;
  if (!(await env.locks.acquire(['drill'], owner, LOCK_TTL)))
    return { job: 'drill', status: 'skipped', busy: true, message: 'skipped: another drill is running' };
  const targets = data.targets?.length
    ? data.targets
    : (env.config.drill?.targets ?? env.config.targets.map((t) => t.name));
  try {
    const identityFile = env.config.identity;
    if (!identityFile)
      throw new KeyError(
        'the drill restores, so the worker needs the restore identity: set `identity:` in the configuration',
      );
    const identity = await loadRestoreIdentity(identityFile);
    const worker = await loadWorkerKey(env.config.keys);
    const scratch = env.config.drill?.tarballs
      ? path.resolve(env.configDir, env.config.drill.tarballs)
      : undefined;
    const r = await holding(ctx, ['drill'], owner, () =>
      withSlot(env, (root) =>
        runDrill({
          config: env.config,
          identity,
          worker,
          stores: env.stores,
          targets: data.targets,
          cacheRoot: root,
          scratchDir: scratch,
          logger: ctx.logger,
          signal: ctx.signal,
        }),
      ),
    );
    await recordDrill(env.state, r.records, r.report.durationMs);
    const failed = r.report.targets.filter((t) => !t.ok).map((t) => t.target);
    return {
      job: 'drill',
      status: r.report.ok ? 'ok' : 'failed',
      message: r.report.ok
        ? `passed on ${r.report.targets.map((t) => t.target).join(', ')}`
        : `FAILED on ${failed.join(', ')}`,
      report: r.stored?.key,
      targets: r.report.targets.map((t) => ({ target: t.target, ok: t.ok, rtoMs: t.rtoMs, rpoMs: t.rpoMs })),
    };
  } catch (err) {
    // A drill that cannot even run (no identity, no target answers) is a failed drill of every target.
    if (!(err instanceof InterruptedError)) {
      const time = new Date().toISOString();
      await recordDrill(
        env.state,
        targets.map((target) => ({
          time,
          target,
          ok: false,
          failed: [`the drill could not run: ${messageOf(err)}`],
        })),
      );
    }
    throw err;
  } finally {
    await env.locks.release(['drill'], owner);
    await afterJob(ctx);
  }
}

async function withRepository<T>(
  env: JobEnv,
  root: string,
  fn: (repo: Repository) => Promise<T>,
): Promise<T> {
  const worker = await loadWorkerKey(env.config.keys);
  const { repo, unreachable } = await Repository.open(env.stores, { worker }, { cacheRoot: root });
  for (const u of unreachable)
    env.logger.warn({ target: u.target, err: u.error.message }, `target ${u.target} cannot be read`);
  try {
    return await fn(repo);
  } finally {
    repo.close();
  }
}

/** Retention: forget the snapshots the policy does not keep, then prune the data nothing needs. */
export async function pruneJob(ctx: JobContext): Promise<JobSummary> {
  const { env } = ctx;
  const owner = `prune-${ctx.id}`;
  if (!(await env.locks.acquire(['maintenance'], owner, LOCK_TTL)))
    return { job: 'prune', status: 'skipped', busy: true, message: 'skipped: another prune is running' };
  const started = Date.now();
  try {
    const out = await holding(ctx, ['maintenance'], owner, () =>
      withSlot(env, (root) =>
        withRepository(env, root, async (repo) => {
          const r = env.config.retention;
          const forgot = r ? await forget(repo, r, { logger: ctx.logger }) : undefined;
          const pruned = await prune(withCache(env.config, root), repo, { logger: ctx.logger });
          return { forgot, pruned };
        }),
      ),
    );
    const errors = out.forgot?.decisions.filter((d) => d.error).length ?? 0;
    await recordJob(env.state, {
      job: 'prune',
      source: 'repository',
      status: errors ? 'partial' : 'ok',
      durationMs: Date.now() - started,
    });
    const freed = out.pruned.targets.reduce((n, t) => n + t.freedBytes, 0);
    return {
      job: 'prune',
      status: errors ? 'partial' : 'ok',
      message: `${out.forgot ? `forgot ${out.forgot.forgotten} snapshot(s), kept ${out.forgot.kept}; ` : ''}freed ${freed} bytes, marked ${out.pruned.marked.packs} pack(s)`,
      forgotten: out.forgot?.forgotten ?? 0,
      freedBytes: freed,
    };
  } catch (err) {
    if (!(err instanceof InterruptedError))
      await recordJob(env.state, {
        job: 'prune',
        source: 'repository',
        status: 'failed',
        durationMs: Date.now() - started,
        error: messageOf(err),
      });
    throw err;
  } finally {
    await env.locks.release(['maintenance'], owner);
    await afterJob(ctx);
  }
}

/** The structure of every target (`regbackup check`, without --read-data). */
export async function checkJob(ctx: JobContext): Promise<JobSummary> {
  const { env } = ctx;
  const results: { target: string; ok: boolean; problems: number }[] = [];
  try {
    await withSlot(env, async (root) => {
      for (const store of env.stores) {
        const started = Date.now();
        try {
          const worker = await loadWorkerKey(env.config.keys);
          const { repo } = await Repository.open([store], { worker }, { cacheRoot: root });
          try {
            const peers = env.stores.filter((s) => s !== store);
            const r = await checkTarget(repo, store, { logger: ctx.logger, peers });
            results.push({ target: store.name, ok: r.ok, problems: r.problems.length });
            await recordJob(env.state, {
              job: 'check',
              source: store.name,
              status: r.ok ? 'ok' : 'failed',
              durationMs: Date.now() - started,
              ...(r.ok
                ? {}
                : {
                    error: r.problems
                      .slice(0, 3)
                      .map((p) => p.message)
                      .join('; '),
                  }),
            });
          } finally {
            repo.close();
          }
        } catch (err) {
          if (err instanceof InterruptedError) throw err;
          results.push({ target: store.name, ok: false, problems: 1 });
          await recordJob(env.state, {
            job: 'check',
            source: store.name,
            status: 'failed',
            durationMs: Date.now() - started,
            error: messageOf(err),
          });
        }
      }
    });
  } finally {
    await afterJob(ctx);
  }
  const bad = results.filter((r) => !r.ok);
  return {
    job: 'check',
    status: bad.length ? 'failed' : 'ok',
    message: bad.length
      ? `problems on ${bad.map((b) => b.target).join(', ')}`
      : `${results.length} target(s) OK`,
    targets: results,
  };
}
