import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { AlertManager } from '../../src/alerts/manager.js';
import type { AlertEvent, Notifier } from '../../src/alerts/notifiers.js';
import type { Config } from '../../src/config/schema.js';
import { configSchema } from '../../src/config/schema.js';
import { evaluateHealth, age } from '../../src/health/evaluate.js';
import { rpoThreshold } from '../../src/health/freshness.js';
import { FileStateStore } from '../../src/health/state.js';
import { createLogger } from '../../src/log.js';
import { lineProtocol } from '../../src/metrics/influx.js';
import { Metrics } from '../../src/metrics/registry.js';
import { FileLocks } from '../../jobs/locks.js';
import { acquireSlot } from '../../jobs/slots.js';
import { tmpDir } from '../harness/index.js';

const logger = createLogger({ level: 'silent' });

function config(extra: Record<string, unknown> = {}): Config {
  return configSchema.parse({
    keys: 'k',
    targets: [
      { name: 'a', type: 'fs', path: '/x' },
      { name: 'b', type: 'fs', path: '/y' },
    ],
    ...extra,
  }) as Config;
}

const now = Date.parse('2026-11-26T12:00:00Z');
const ago = (ms: number) => new Date(now - ms).toISOString();

test('evaluateHealth: OK, RPO, unreachable, behind (grace or left behind), failed drill, overdue drill, failed source', () => {
  const c = config({ alerts: { rpoThreshold: '2h' }, schedule: { drill: '0 4 * * 0' } });
  const fresh = { checked: ago(0), snapshots: 3, newest: ago(60_000), newestId: 'x' };
  let h = evaluateHealth(c, { targets: { a: fresh, b: fresh }, drills: {} }, now);
  assert.equal(h.status, 'OK');
  assert.equal(h.exitCode, 0);
  assert.match(h.summary, /^REGBACKUP OK - 2 targets, newest snapshot age: a 1m, b 1m; no drill on record$/);

  h = evaluateHealth(
    c,
    {
      targets: {
        a: { ...fresh, newest: ago(20 * 60_000) },
        b: { checked: ago(0), snapshots: 2, newest: ago(3 * 3600_000) },
      },
      drills: {},
    },
    now,
  );
  assert.deepEqual(h.problems.map((p) => p.key).sort(), ['rpo:b', 'target-behind:b']);
  assert.equal(h.status, 'CRITICAL');
  assert.match(
    h.summary,
    /^REGBACKUP CRITICAL - newest snapshot on b is 3h old \(threshold 2h\); target b is behind the others/,
  );

  // Missing the newest snapshot for a moment (mid-commit) is not "behind"; once the run says so, it is.
  const almost = { checked: ago(0), snapshots: 2, newest: ago(90_000) };
  assert.deepEqual(evaluateHealth(c, { targets: { a: fresh, b: almost }, drills: {} }, now).problems, []);
  const left = evaluateHealth(
    c,
    {
      targets: { a: fresh, b: almost },
      drills: {},
      backup: { time: ago(60_000), ok: true, behind: { b: 'timeout' }, failedSources: [] },
    },
    now,
  );
  assert.deepEqual(
    left.problems.map((p) => [p.key, p.severity]),
    [['target-behind:b', 'warning']],
  );
  assert.equal(left.exitCode, 1);

  h = evaluateHealth(
    c,
    { targets: { a: fresh, b: { checked: ago(0), snapshots: 0, error: 'ECONNREFUSED' } }, drills: {} },
    now,
  );
  assert.deepEqual(
    h.problems.map((p) => p.key),
    ['target-unreachable:b'],
  );

  h = evaluateHealth(
    c,
    {
      targets: { a: fresh, b: fresh },
      drills: {
        a: { time: ago(9 * 86400_000), target: 'a', ok: true, failed: [] },
        b: { time: ago(3600_000), target: 'b', ok: false, failed: ['x: y'] },
      },
      backup: { time: ago(0), ok: true, behind: {}, failedSources: ['couch'] },
    },
    now,
  );
  assert.deepEqual(h.problems.map((p) => p.key).sort(), ['drill-failed:b', 'source-failed:couch']);
  h = evaluateHealth(
    c,
    {
      targets: { a: fresh, b: fresh },
      drills: { a: { time: ago(9 * 86400_000), target: 'a', ok: true, failed: [] } },
    },
    now,
  );
  assert.deepEqual(
    h.problems.map((p) => [p.key, p.severity]),
    [['drill-overdue', 'warning']],
  );
  assert.deepEqual(
    [age(42_000), age(300_000), age(3 * 3600_000 + 12 * 60_000), age(9 * 86400_000)],
    ['42s', '5m', '3h12m', '9d'],
  );
});

test('evaluateHealth: the newest data READ from each source against its RPO threshold; a partial run warns', () => {
  const c = config({
    alerts: { rpoThreshold: '2h' },
    sources: {
      couchdb: [{ name: 'couch', url: 'http://h:5984', rpoThreshold: '6h' }],
      tarballs: [{ name: 'files', path: '/t' }],
    },
  });
  const targets = {
    a: { checked: ago(0), snapshots: 3, newest: ago(60_000), newestId: 'x' },
    b: { checked: ago(0), snapshots: 3, newest: ago(60_000), newestId: 'x' },
  };
  const fresh = (source: string, ms: number, extra = {}) => ({
    source,
    fresh: ago(ms),
    snapshot: 'f'.repeat(64),
    target: 'a',
    ...extra,
  });
  const run = (sources: Record<string, object>, backup?: object) =>
    evaluateHealth(
      c,
      {
        targets,
        drills: {},
        freshness: { sources, unreadable: [], errors: {} } as never,
        ...(backup ? { backup: backup as never } : {}),
      },
      now,
    );
  // Within their thresholds (the source's own 6h, the global 2h): OK.
  assert.deepEqual(
    run({ couch: fresh('couch', 5 * 3600_000), files: fresh('files', 3600_000) }).problems,
    [],
  );
  // Carried over for 7h while every snapshot is new: the source's data is too old.
  let h = run({ couch: fresh('couch', 7 * 3600_000, { carried: true }), files: fresh('files', 60_000) });
  assert.deepEqual(
    h.problems.map((p) => [p.key, p.severity]),
    [['source-rpo:couch', 'critical']],
  );
  assert.match(
    h.summary,
    /^REGBACKUP CRITICAL - the newest data read from source couch is 7h old \(threshold 6h; snapshot ffffffffffff on a; the newest snapshot carries it over\)$/,
  );
  // Never read (a first backup with the source down), or not within the snapshots examined.
  h = run({ couch: { source: 'couch', never: true }, files: { source: 'files', olderThan: ago(86400_000) } });
  assert.deepEqual(
    h.problems.map((p) => p.summary),
    [
      'no snapshot holds data read from source couch (never backed up)',
      `the newest data read from source files is older than ${ago(86400_000)} (threshold 2h)`,
    ],
  );
  // A partial run (a database left behind) is a warning; a source that could not be read is critical.
  const ok = { couch: fresh('couch', 60_000), files: fresh('files', 60_000) };
  h = run(ok, {
    time: ago(60_000),
    ok: true,
    exitCode: 6,
    behind: {},
    failedSources: [],
    problems: ['couch: database x failed'],
    problemCount: 3,
    by: 'by hand',
  });
  assert.equal(h.status, 'WARNING');
  assert.match(
    h.summary,
    /the last backup by hand \(.*\) left something behind: couch: database x failed \(and 2 more\)$/,
  );
  h = run(ok, {
    time: ago(60_000),
    ok: true,
    exitCode: 3,
    behind: {},
    failedSources: ['couch'],
    sourceErrors: { couch: 'refused (401)' },
    carried: [],
    by: 'worker',
  });
  assert.equal(h.status, 'CRITICAL');
  assert.match(
    h.summary,
    /the last backup by the worker \(.*\) could not read source couch \(it is not in the snapshot\): refused \(401\)$/,
  );
  // Snapshots that cannot be read are reported; without the worker key the ages are unknown: a warning.
  h = evaluateHealth(
    c,
    {
      targets,
      drills: {},
      freshness: {
        sources: ok,
        unreadable: [{ target: 'b', snapshot: 'e'.repeat(64), error: 'signature does not verify' }],
        errors: {},
      } as never,
    },
    now,
  );
  assert.deepEqual(
    h.problems.map((p) => p.key),
    ['snapshot-unreadable:b'],
  );
  h = evaluateHealth(c, { targets, drills: {}, freshnessError: 'no worker key' }, now);
  assert.deepEqual(
    h.problems.map((p) => [p.key, p.severity]),
    [['freshness-unknown', 'warning']],
  );
});

test('rpoThreshold: the source own, alerts.rpoThreshold, else twice the longest gap of schedule.backup (at least 30min), else 2h', () => {
  const sources = { couchdb: [{ name: 'couch', url: 'http://h:5984', rpoThreshold: '6h' }] };
  assert.equal(rpoThreshold(config({ sources }), 'couch'), 6 * 3600_000);
  assert.equal(rpoThreshold(config({ sources }), 'other'), 2 * 3600_000);
  assert.equal(
    rpoThreshold(config({ alerts: { rpoThreshold: '3h' }, schedule: { backup: '0 * * * *' } })),
    3 * 3600_000,
  );
  assert.equal(rpoThreshold(config({ schedule: { backup: '0 * * * *' } })), 2 * 3600_000);
  assert.equal(rpoThreshold(config({ schedule: { backup: '15 2 * * *' } })), 48 * 3600_000);
  assert.equal(rpoThreshold(config({ schedule: { backup: '*/5 * * * *' } })), 30 * 60_000);
  // Weekdays only: the longest gap is the weekend (Friday to Monday).
  assert.equal(rpoThreshold(config({ schedule: { backup: '0 1 * * 1-5' } })), 2 * 72 * 3600_000);
  assert.equal(rpoThreshold(config({ schedule: { drill: '0 4 * * 0' } })), 2 * 3600_000);
});

test('AlertManager: one trigger per problem, a failed send retried, resolve once; two managers on one state never both trigger', async (t) => {
  const dir = await tmpDir(t);
  const state = new FileStateStore(path.join(dir, 'state.json'));
  const sent: AlertEvent[] = [];
  let fail = false;
  const n: Notifier = {
    name: 'test',
    async send(e) {
      if (fail) throw new Error('down');
      sent.push(e);
    },
  };
  const c = config();
  const m1 = new AlertManager(c, state, logger, [n]);
  const m2 = new AlertManager(c, state, logger, [n]);
  const p = { key: 'rpo:a', severity: 'critical' as const, summary: 'old' };
  const [r1, r2] = await Promise.all([m1.reconcile([p]), m2.reconcile([p])]);
  assert.equal(r1.triggered.length + r2.triggered.length, 1);
  assert.deepEqual(
    sent.map((e) => [e.action, e.dedupKey]),
    [['trigger', 'regbackup:rpo:a']],
  );
  await m1.reconcile([p]);
  assert.equal(sent.length, 1);

  fail = true;
  await m1.reconcile([p, { key: 'drill-failed:b', severity: 'critical', summary: 'bad' }]);
  assert.equal(sent.length, 1);
  fail = false;
  await m1.reconcile([p, { key: 'drill-failed:b', severity: 'critical', summary: 'bad' }]);
  assert.deepEqual(
    sent.map((e) => e.dedupKey),
    ['regbackup:rpo:a', 'regbackup:drill-failed:b'],
  );

  await m1.reconcile([]);
  assert.deepEqual(
    sent
      .slice(2)
      .map((e) => [e.action, e.dedupKey])
      .sort(),
    [
      ['resolve', 'regbackup:drill-failed:b'],
      ['resolve', 'regbackup:rpo:a'],
    ],
  );
  await m2.reconcile([]);
  assert.equal(sent.length, 4);
});

test('FileLocks: all or nothing, owners renew, a dead holder is taken over; slots: one per job, taken over from a dead process', async (t) => {
  const dir = await tmpDir(t);
  const locks = new FileLocks(dir);
  assert.equal(await locks.acquire(['source:a', 'source:b'], 'run-1', 60_000), true);
  assert.equal(await locks.acquire(['source:b', 'source:c'], 'run-2', 60_000), false);
  assert.deepEqual(await locks.held(), { 'source:a': 'run-1', 'source:b': 'run-1' }, 'run-2 took nothing');
  assert.equal(await locks.renew(['source:a', 'source:b'], 'run-1', 60_000), true);
  await locks.release(['source:a', 'source:b'], 'run-1');
  assert.equal(await locks.acquire(['source:b'], 'run-2', 1), true);
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(await locks.acquire(['source:b'], 'run-3', 60_000), true, 'expired');

  const s1 = acquireSlot(dir);
  const s2 = acquireSlot(dir);
  assert.notEqual(s1.root, s2.root);
  s1.release();
  const s3 = acquireSlot(dir);
  assert.equal(s3.root, s1.root);
  s2.release();
  s3.release();
});

test('InfluxDB line protocol: one line per series, tags escaped', async () => {
  const m = new Metrics(config(), {
    defaultMetrics: false,
    queueCounts: async () => ({ 'waiting children': 2 }),
  });
  m.storeMetrics('a,b c').request('put');
  const text = await lineProtocol(m, Date.parse('2026-01-01T00:00:00Z'));
  assert.match(text, /^regbackup_store_requests_total,op=put,target=a\\,b\\ c value=1 1767225600000000000$/m);
  assert.match(text, /^regbackup_queue_jobs,state=waiting\\ children value=2 1767225600000000000$/m);
  assert.match(text, /^regbackup_health_status value=3 /m);
});
