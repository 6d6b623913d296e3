import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { AlertManager } from '../../src/alerts/manager.js';
import type { AlertEvent, Notifier } from '../../src/alerts/notifiers.js';
import type { Config } from '../../src/config/schema.js';
import { configSchema } from '../../src/config/schema.js';
import { evaluateHealth, age } from '../../src/health/evaluate.js';
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
