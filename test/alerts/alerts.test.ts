import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../harness/index.js';
import { makeFixture, startReceiver, type JobsFixture, type Receiver } from '../jobs/fixture.js';

/**
 * Alerts and check-health against a local HTTP receiver standing for PagerDuty (Events API v2) and a webhook:
 * one trigger per problem however often it is seen, a failed send retried, a resolve when healthy again; and
 * the Nagios exit statuses.
 */
describe('alerts (PagerDuty v2 and webhook) and check-health', () => {
  let f: JobsFixture;
  let rx: Receiver;
  let alerts: string;

  const events = (kind: 'trigger' | 'resolve', key?: string) =>
    rx.events.filter((e) =>
      e.path === '/pd'
        ? e.body.event_action === kind && (!key || e.body.dedup_key === `regbackup:${key}`)
        : e.body.event === kind && (!key || e.body.dedupKey === `regbackup:${key}`),
    );
  const health = async (...args: string[]) => {
    const r = await f.cli(['check-health', ...args]);
    assert.match(r.stdout, /^REGBACKUP (OK|WARNING|CRITICAL|UNKNOWN) - /);
    assert.equal(r.stdout.trim().split('\n').length, 1, 'one line');
    return r;
  };

  before(async () => {
    rx = await startReceiver();
    f = await makeFixture({ packages: 8 });
    alerts = `alerts:
  pagerduty: { routingKey: rk-123, url: "${rx.url}/pd" }
  webhook: { url: "${rx.url}/hook", headers: { Authorization: "Bearer hook-secret" } }
  rpoThreshold: 1h
schedule: { drill: '0 4 * * 0', timezone: UTC }
`;
    f.writeConfig(alerts);
  });
  after(async () => {
    await f.stop();
    await rx.close();
  });

  test('RPO above the threshold: one incident per target, triggered once, resolved once a backup is within it again', async () => {
    // The threshold is changed rather than the clock waited on: a snapshot's age only grows, so "under 1h"
    // right after a backup and "over 1s" 1.5 s later hold however slow a loaded machine runs the commands.
    assert.equal((await f.cli(['jobs', 'run', 'backup'])).code, 0);
    const ok = await health('--alert');
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /\| rpo_local=\d+s;;3600;0 rpo_aws=\d+s;;3600;0/);
    assert.equal(rx.events.length, 0);

    f.writeConfig(alerts.replace('rpoThreshold: 1h', 'rpoThreshold: 1s'));
    await new Promise((r) => setTimeout(r, 1500));
    const crit = await health('--alert');
    assert.equal(crit.code, 2);
    assert.match(crit.stdout, /^REGBACKUP CRITICAL - newest snapshot on local is \d+s old \(threshold 1s\)/);
    assert.equal(events('trigger', 'rpo:local').length, 2, JSON.stringify(rx.events.map((e) => e.body)));
    assert.equal(events('trigger', 'rpo:aws').length, 2);
    const pd = events('trigger', 'rpo:local').find((e) => e.path === '/pd')!.body as {
      routing_key: string;
      payload: { severity: string; summary: string; component: string; class: string };
    };
    assert.equal(pd.routing_key, 'rk-123');
    assert.deepEqual(
      [pd.payload.severity, pd.payload.component, pd.payload.class],
      ['critical', 'local', 'rpo'],
    );
    assert.equal(
      events('trigger', 'rpo:local').find((e) => e.path === '/hook')!.headers.authorization,
      'Bearer hook-secret',
    );

    // The data of each source is as old as the snapshot: over the same threshold, one incident per source.
    assert.equal(events('trigger', 'source-rpo:skimdb').length, 2);
    assert.equal(events('trigger', 'source-rpo:tarballs').length, 2);
    for (let i = 0; i < 3; i++) assert.equal((await health('--alert')).code, 2);
    assert.equal(events('trigger').length, 8, 'no alert storm: still one trigger per problem and channel');
    // Without --alert, check-health only reports.
    await health();
    assert.equal(events('trigger').length, 8);

    // A new backup, judged against a threshold a fresh snapshot meets on any machine.
    assert.equal((await f.cli(['jobs', 'run', 'backup'])).code, 0);
    f.writeConfig(alerts);
    const again = await health('--alert');
    assert.equal(again.code, 0, again.stdout);
    assert.equal(events('resolve', 'rpo:local').length, 2);
    assert.equal(events('resolve', 'rpo:aws').length, 2);
    assert.equal(events('resolve', 'source-rpo:skimdb').length, 2);
    assert.equal(events('resolve').length, 8);
  });

  test('a failed send is retried at the next check (and sent once); a source that failed, a target left behind', async () => {
    f.writeConfig(alerts);
    const before = rx.events.length;
    // The CouchDB source refuses the credentials: the run exits 3 and the source is carried over.
    const bad = new URL(f.couch.url);
    bad.password = 'wrong-password';
    rx.status = 500;
    assert.equal((await f.cli(['jobs', 'run', 'backup'], { COUCH_URL: bad.toString() })).code, 3);
    const crit = await health('--alert');
    assert.equal(crit.code, 2);
    assert.match(crit.stdout, /could not read source skimdb/);
    assert.equal(rx.events.length, before, 'the receiver refused everything');
    rx.status = 202;
    await health('--alert');
    assert.equal(events('trigger', 'source-failed:skimdb').length, 2, 'sent once the receiver answers');
    await health('--alert');
    assert.equal(events('trigger', 'source-failed:skimdb').length, 2, 'and only once');

    // The S3 target is down for one run: left behind, then behind the other target until caught up.
    const down = await freePort();
    const cfg = readFileSync(f.configFile, 'utf8');
    writeFileSync(f.configFile, cfg.replace(f.s3.endpoint, `http://127.0.0.1:${down}`));
    const partial = await f.cli(['jobs', 'run', 'backup', '--json']);
    assert.equal(partial.code, 6, partial.stderr);
    writeFileSync(f.configFile, cfg);
    const warn = await health('--alert');
    assert.match(warn.stdout, /target aws is behind the others/);
    assert.equal(events('trigger', 'target-behind:aws').length, 2);
    assert.equal(events('resolve', 'source-failed:skimdb').length, 2, 'the source was read again');
    const next = await f.cli(['jobs', 'run', 'backup']);
    assert.equal(next.code, 0, next.stderr);
    assert.equal((await health('--alert')).code, 0);
    assert.equal(events('resolve', 'target-behind:aws').length, 2);
  });

  test('exit statuses: WARNING for an overdue drill, CRITICAL for a failed drill, UNKNOWN for a configuration it cannot read', async () => {
    f.writeConfig(alerts);
    assert.equal((await f.cli(['jobs', 'run', 'backup'])).code, 0);
    assert.equal((await health()).code, 0);
    const stateFile = path.join(f.dir, 'cache', 'worker-state.json');
    const state = JSON.parse(readFileSync(stateFile, 'utf8')) as Record<string, unknown>;
    const old = new Date(Date.now() - 9 * 86400_000).toISOString();
    state['drill:local'] = { time: old, target: 'local', ok: true, rtoMs: 1000, failed: [] };
    writeFileSync(stateFile, JSON.stringify(state));
    const warn = await health();
    assert.equal(warn.code, 1, warn.stdout);
    assert.match(warn.stdout, /^REGBACKUP WARNING - no restore drill for 9d \(at most 8d expected\)/);

    state['drill:aws'] = {
      time: new Date().toISOString(),
      target: 'aws',
      ok: false,
      failed: ['tarballs: sha512 mismatch'],
    };
    writeFileSync(stateFile, JSON.stringify(state));
    const crit = await f.cli(['check-health', '--json']);
    assert.equal(crit.code, 2);
    const j = JSON.parse(crit.stdout) as { status: string; problems: { key: string; severity: string }[] };
    assert.equal(j.status, 'CRITICAL');
    assert.deepEqual(j.problems.map((p) => [p.key, p.severity]).sort(), [['drill-failed:aws', 'critical']]);

    const missing = await f.cli(['check-health'], { REGBACKUP_CONFIG: path.join(f.dir, 'nope.yaml') });
    assert.equal(missing.code, 3);
    assert.match(missing.stdout, /^REGBACKUP UNKNOWN - /);
    const broken = await f.cli(['check-health', '--quiet'], { COUCH_URL: undefined });
    assert.equal(broken.code, 3);
    assert.match(broken.stdout, /^REGBACKUP UNKNOWN - .*COUCH_URL/);
  });
});
