import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { CouchSourceSnapshot, TarballSourceSnapshot } from '../src/repo/format/source-snapshots.js';
import type { Config } from '../src/config/schema.js';
import { InterruptedError, messageOf, UsageError } from '../src/errors.js';
import { log as rootLog, type Logger } from '../src/log.js';
import type { RestoreIdentity, WorkerKey } from '../src/repo/keys.js';
import { BlobReader } from '../src/repo/reader.js';
import { defaultCacheRoot, Repository } from '../src/repo/repository.js';
import { CouchClient, dbPath } from '../src/couchdb/client.js';
import { openStore } from '../src/store/index.js';
import type { ObjectStore } from '../src/store/types.js';
import { compareWithSource, sampleDatabase, standbyServes, type DbSample } from './drill-docs.js';
import {
  drillRecords,
  storeDrillReport,
  type DrillCheck,
  type DrillReport,
  type TargetDrill,
} from './drill-report.js';
import { startTemporaryCouch, type TemporaryCouch } from './drill-standby.js';
import { verifyTarballs, type RestoredDb, type RestoredStore } from './drill-tarballs.js';
import { restoreSnapshot } from './engine.js';
import { openForRestore, pickSnapshot } from './open.js';
import { Journal } from './state.js';
import type { RestoreReport } from './types.js';

/**
 * The restore drill: for each target, restore its newest snapshot into a standby — the configured drill
 * CouchDB under scratch database names, or a temporary in-memory CouchDB-compatible server — and a scratch
 * tarball directory, with the restore library (restore/engine.ts, which verifies counts, tombstones, every
 * winning revision and conflict); then the drill's own checks (drill-docs.ts, drill-tarballs.ts); measure the
 * RTO (time to a verified standby) and RPO (age of the snapshot); clean up; store the signed report in the
 * repository. Each target is restored from that target ALONE: a drill proves that every copy restores.
 */
export interface DrillOptions {
  config: Config;
  identity: RestoreIdentity;
  /** Signs the stored report. */
  worker: WorkerKey;
  /** The targets' stores (default: opened from the configuration). */
  stores?: ObjectStore[];
  /** Only these targets (default: drill.targets, else all). */
  targets?: string[];
  cacheRoot?: string;
  /** Parent of the scratch tarball directories (default: drill.tarballs, else the system's temporary directory). */
  scratchDir?: string;
  /** A CouchDB URL to restore into (default: drill.couchdb, else a temporary server). */
  couchdb?: string;
  sample?: number;
  keep?: boolean;
  /** Store the report in the repository (default true). */
  store?: boolean;
  parallel?: number;
  logger?: Logger;
  signal?: AbortSignal;
}

export interface DrillResult {
  report: DrillReport;
  stored?: { key: string; targets: string[]; failed: { target: string; error: string }[] };
  records: ReturnType<typeof drillRecords>;
}

/** CouchDB database names: lowercase letter first, then [a-z0-9_$()+/-]. */
function scratchName(drill: string, target: string, db: string): string {
  const clean = (s: string) => s.toLowerCase().replace(/[^a-z0-9_$()+/-]/g, '-');
  return `regbackup-drill-${drill}-${clean(target)}-${clean(db)}`;
}

function urlWithoutCredentials(u: string): string {
  const url = new URL(u);
  url.username = '';
  url.password = '';
  return url.toString().replace(/\/+$/, '');
}

export async function runDrill(o: DrillOptions): Promise<DrillResult> {
  const logger = o.logger ?? rootLog();
  const cfg = o.config.drill;
  const started = Date.now();
  const id = randomBytes(4).toString('hex');
  const stores = o.stores ?? o.config.targets.map((t) => openStore(t));
  const wanted = o.targets?.length ? o.targets : (cfg?.targets ?? o.config.targets.map((t) => t.name));
  for (const t of wanted)
    if (!stores.some((s) => s.name === t))
      throw new UsageError(
        `drill: no target named ${t} (configured: ${stores.map((s) => s.name).join(', ')})`,
      );
  const cacheRoot = o.cacheRoot ?? o.config.cache ?? defaultCacheRoot();
  const sample = o.sample ?? cfg?.sample ?? 50;
  const keep = o.keep ?? cfg?.keep ?? false;
  const scratchParent = o.scratchDir ?? cfg?.tarballs ?? os.tmpdir();
  const configured = o.couchdb ?? cfg?.couchdb;
  let temp: TemporaryCouch | undefined;
  const targets: TargetDrill[] = [];
  let repository: string | undefined;
  try {
    if (!configured) {
      temp = await startTemporaryCouch();
      logger.info(
        { url: temp.baseUrl },
        'drill: started a temporary CouchDB-compatible server (no drill.couchdb configured)',
      );
    }
    const couchUrl = configured ?? temp!.url;
    for (const target of wanted) {
      if (o.signal?.aborted) throw new InterruptedError('drill interrupted');
      const t = await drillTarget({
        ...o,
        logger,
        id,
        target,
        stores,
        cacheRoot,
        sample,
        keep,
        scratchParent,
        couchUrl,
      });
      repository ??= t.repository;
      targets.push(t.drill);
      logger.info(
        { target, ok: t.drill.ok, rtoMs: t.drill.rtoMs, rpoMs: t.drill.rpoMs },
        `drill of ${target}: ${t.drill.ok ? 'passed' : 'FAILED'}`,
      );
    }
  } finally {
    if (temp && !keep) await temp.stop();
    else if (temp)
      logger.warn(
        { url: temp.baseUrl },
        'drill.keep: the temporary server is stopped anyway when this process ends',
      );
  }
  const finished = Date.now();
  const report: DrillReport = {
    version: 1,
    kind: 'regbackup-drill',
    id,
    time: new Date(started).toISOString(),
    finished: new Date(finished).toISOString(),
    host: os.hostname(),
    ...(repository ? { repository } : {}),
    standby: configured ? 'configured' : 'temporary',
    ok: targets.length > 0 && targets.every((t) => t.ok),
    targets,
    durationMs: finished - started,
  };
  let stored: DrillResult['stored'];
  if (o.store !== false) {
    try {
      const { repo } = await Repository.open(stores, { worker: o.worker }, { cacheRoot });
      try {
        stored = await storeDrillReport(repo, report);
        for (const f of stored.failed)
          logger.warn(
            { target: f.target, err: f.error },
            `the drill report could not be stored on ${f.target}`,
          );
      } finally {
        repo.close();
      }
    } catch (err) {
      logger.error({ err: messageOf(err) }, 'the drill report could not be stored in the repository');
    }
  }
  return { report, stored, records: drillRecords(report, stored?.key) };
}

interface TargetContext extends DrillOptions {
  logger: Logger;
  id: string;
  target: string;
  stores: ObjectStore[];
  cacheRoot: string;
  sample: number;
  keep: boolean;
  scratchParent: string;
  couchUrl: string;
}

async function drillTarget(c: TargetContext): Promise<{ drill: TargetDrill; repository?: string }> {
  const t0 = Date.now();
  const d: TargetDrill = {
    target: c.target,
    ok: false,
    checks: [],
    cleanup: { ok: true, kept: c.keep, errors: [] },
  };
  const standby = new CouchClient(
    { name: 'standby', url: c.couchUrl, timeout: 10 * 60_000, concurrency: c.parallel ?? 8 },
    { signal: c.signal },
  );
  const scratchDbs: string[] = [];
  let scratchDir: string | undefined;
  let repo: Repository | undefined;
  const reports: RestoreReport[] = [];
  try {
    const opened = await openForRestore({
      targets: c.stores,
      from: c.target,
      identity: c.identity,
      cacheRoot: c.cacheRoot,
    });
    repo = opened.repo;
    const choice = await pickSnapshot(repo, { snapshot: 'latest' });
    d.snapshot = {
      id: choice.info.id,
      time: choice.manifest.time,
      ...(choice.manifest.host ? { host: choice.manifest.host } : {}),
    };
    d.rpoMs = Math.max(0, t0 - Date.parse(choice.manifest.time));
    const couchSources = choice.manifest.sources.filter((s) => s.kind === 'couchdb') as CouchSourceSnapshot[];
    const tarballSources = choice.manifest.sources.filter(
      (s) => s.kind === 'tarballs',
    ) as TarballSourceSnapshot[];
    await mkdir(c.scratchParent, { recursive: true });
    scratchDir = await mkdtemp(path.join(c.scratchParent, `regbackup-drill-${c.id}-`));
    const dirOf = (s: TarballSourceSnapshot) => path.join(scratchDir!, s.name);
    const dbName = (db: string, source: string) => {
      const n = scratchName(c.id, c.target, couchSources.length > 1 ? `${source}-${db}` : db);
      scratchDbs.push(n);
      return n;
    };
    d.standby = {
      couchdb: urlWithoutCredentials(c.couchUrl),
      databases: couchSources.flatMap((s) =>
        s.databases.map((db) => ({
          source: s.name,
          name: db.name,
          scratch: scratchName(c.id, c.target, couchSources.length > 1 ? `${s.name}-${db.name}` : db.name),
        })),
      ),
      ...(tarballSources.length ? { tarballs: scratchDir } : {}),
    };

    // 1. Restore, with the restore library: the couch databases and the first tarball store, then any other store.
    const calls = [
      {
        sources: [...couchSources.map((s) => s.name), ...(tarballSources[0] ? [tarballSources[0].name] : [])],
        tarballs: tarballSources[0],
      },
      ...tarballSources.slice(1).map((s) => ({ sources: [s.name], tarballs: s })),
    ].filter((x) => x.sources.length);
    for (const call of calls) {
      const r = await restoreSnapshot({
        repo,
        snapshot: choice.info,
        manifest: choice.manifest,
        metaStore: choice.store,
        couchdb:
          couchSources.length && call.sources.some((n) => couchSources.some((s) => s.name === n))
            ? { url: c.couchUrl, dbName }
            : undefined,
        tarballs: call.tarballs ? { dir: dirOf(call.tarballs) } : undefined,
        only: { sources: call.sources },
        parallel: c.parallel,
        resume: false,
        signal: c.signal,
      });
      reports.push(r);
      for (const db of r.databases) for (const ch of db.checks) d.checks.push({ group: 'restore', ...ch });
      for (const tb of r.tarballs) for (const ch of tb.checks) d.checks.push({ group: 'restore', ...ch });
    }
    d.restore = {
      docs: reports.reduce((n, r) => n + r.totals.docs, 0),
      files: reports.reduce((n, r) => n + r.totals.files, 0),
      bytes: reports.reduce((n, r) => n + r.totals.bytes, 0),
      durationMs: reports.reduce((n, r) => n + r.totals.durationMs, 0),
      bytesPerSecond: 0,
      fallbackCount: reports.reduce((n, r) => n + r.targets.fallbackCount, 0),
      exitCode: Math.max(0, ...reports.map((r) => r.exitCode)),
    };
    d.restore.bytesPerSecond = d.restore.durationMs
      ? Math.round((d.restore.bytes * 1000) / d.restore.durationMs)
      : 0;

    // 2. The drill's own checks, against the snapshot's listings (read with the restore identity, this target only).
    const index = await repo.loadIndex(choice.store);
    const reader = new BlobReader(repo, index, [choice.store]);
    const restoredDbs: RestoredDb[] = [];
    for (const s of couchSources) {
      const cfg = c.config.sources.couchdb.find((x) => x.name === s.name);
      const source = cfg ? new CouchClient(cfg, { signal: c.signal }) : undefined;
      for (const db of s.databases) {
        const scratch = d.standby.databases.find((x) => x.source === s.name && x.name === db.name)!.scratch;
        restoredDbs.push({ db, scratch });
        const smp: DbSample = await sampleDatabase(reader, db, c.sample);
        d.checks.push(await compareWithSource(source, standby, db.name, scratch, smp.docs, c.parallel));
        d.checks.push(...(await standbyServes(standby, scratch, smp)));
      }
    }
    const restoredStores: RestoredStore[] = tarballSources.map((s) => ({ source: s, dir: dirOf(s) }));
    if (restoredStores.length || restoredDbs.length) {
      d.checks.push(
        ...(await verifyTarballs({
          standby,
          reader,
          dbs: restoredDbs,
          stores: restoredStores,
          sample: c.sample,
          parallel: c.parallel,
          signal: c.signal,
        })),
      );
    }
    d.ok =
      d.checks.length > 0 &&
      d.checks.every((ch: DrillCheck) => ch.ok || ch.skipped === true) &&
      reports.every((r) => r.verified);
    // The recovery time is reached only with a verified standby.
    if (d.ok) d.rtoMs = Date.now() - t0;
    d.durationMs = Date.now() - t0;
    return { drill: d, repository: repo.config.id };
  } catch (err) {
    if (err instanceof InterruptedError) throw err;
    d.error = messageOf(err);
    d.ok = false;
    d.durationMs = Date.now() - t0;
    c.logger.error({ target: c.target, err: d.error }, `drill of ${c.target} failed`);
    return { drill: d, repository: repo?.config.id };
  } finally {
    if (!c.keep) {
      for (const db of scratchDbs) {
        try {
          await standby.json('DELETE', dbPath(db), { db, notFound: 'return' });
        } catch (err) {
          d.cleanup.ok = false;
          d.cleanup.errors.push(`database ${db}: ${messageOf(err)}`);
        }
      }
      if (scratchDir) {
        await rm(scratchDir, { recursive: true, force: true }).catch((err: unknown) => {
          d.cleanup.ok = false;
          d.cleanup.errors.push(`${scratchDir}: ${messageOf(err)}`);
        });
      }
    }
    // The restore journals of scratch destinations are never resumed: remove them.
    if (repo) {
      for (const r of reports)
        await rm(Journal.fileFor(path.join(repo.cacheDir, 'restore'), r.destination), { force: true });
      repo.close();
    }
  }
}
