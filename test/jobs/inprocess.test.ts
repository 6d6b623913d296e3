import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JobsStatus } from '../../jobs/status.js';
import {
  makeFixture,
  spawnWorker,
  startReceiver,
  until,
  type JobsFixture,
  type Receiver,
} from './fixture.js';

interface SnapshotList {
  snapshots: { id: string; time: string }[];
}

describe('the in-process worker (node-cron): schedule, jobs, metrics, SIGTERM', () => {
  let f: JobsFixture;
  let influx: Receiver;

  before(async () => {
    influx = await startReceiver();
    f = await makeFixture({ packages: 12 });
  });
  after(async () => {
    await f.stop();
    await influx.close();
  });

  const snapshots = async () =>
    (JSON.parse((await f.cli(['snapshots', '--json', '--target', 'local'])).stdout) as SnapshotList)
      .snapshots;

  test('a per-second schedule fires backups in this process; jobs --json, /metrics and InfluxDB show them; SIGTERM exits 0', async () => {
    f.writeConfig(`schedule: { backup: '*/3 * * * * *', drill: '0 4 * * 0', timezone: Europe/Berlin, shutdownGrace: 10s }
metrics:
  prometheus: { port: 0, host: 127.0.0.1 }
  influxdb: { url: "${influx.url}/api/v2/write?org=o&bucket=b", token: secret-token, interval: 1s }
alerts: { checkInterval: 1s, rpoThreshold: 1h }
`);
    const before = (await snapshots()).length;
    const w = spawnWorker(f.env);
    await w.waitFor(/serving Prometheus metrics/);
    const url = /"url":"([^"]+)\/metrics"/.exec(
      w
        .stderr()
        .split('\n')
        .find((l) => /serving Prometheus/.test(l))!,
    )![1]!;
    await w.waitFor(/backup finished[\s\S]*backup finished/, 30_000);
    assert.ok((await snapshots()).length >= before + 2, 'two scheduled backups wrote two snapshots');

    const js = await f.cli(['jobs', '--json']);
    assert.equal(js.code, 0, js.stderr);
    const status = JSON.parse(js.stdout) as JobsStatus;
    assert.equal(status.mode, 'in-process');
    assert.deepEqual(
      status.schedules.map((s) => [s.job, s.pattern, s.timezone]),
      [
        ['backup', '*/3 * * * * *', 'Europe/Berlin'],
        ['drill', '0 4 * * 0', 'Europe/Berlin'],
      ],
    );
    const drillNext = new Date(status.schedules[1]!.next!);
    // Sunday 04:00 in Berlin is 02:00 or 03:00 UTC.
    assert.equal(drillNext.getUTCDay(), 0);
    assert.ok([2, 3].includes(drillNext.getUTCHours()), drillNext.toISOString());
    assert.ok(Date.parse(status.schedules[0]!.next!) - Date.now() <= 3500);
    const last = status.last.find((j) => j.job === 'backup' && j.source === 'tarballs')!;
    assert.equal(last.lastStatus, 'ok');
    assert.ok(last.runs >= 2);
    const text = await f.cli(['jobs']);
    assert.match(text.stdout, /backup\s+\*\/3 \* \* \* \* \*\s+Europe\/Berlin\s+next/);

    const metrics = await (await fetch(`${url}/metrics`)).text();
    for (const name of [
      'regbackup_job_last_success_timestamp_seconds{job="backup",source="skimdb"}',
      'regbackup_job_last_success_duration_seconds{job="backup",source="tarballs"}',
      'regbackup_job_failures_total{job="backup",source="skimdb"} 0',
      'regbackup_target_new_bytes_total{target="local"}',
      'regbackup_target_dedup_bytes_total{target="aws"}',
      'regbackup_target_stored_bytes_total{target="aws"}',
      'regbackup_rpo_seconds{target="aws"}',
      'regbackup_target_up{target="local"} 1',
      'regbackup_queue_jobs{state="active"}',
      'regbackup_health_status 0',
      'regbackup_alerts_open 0',
      'regbackup_store_requests_total{target="aws",op="put"}',
      'regbackup_store_bytes_total{target="local",direction="up"}',
      'regbackup_process_resident_memory_bytes',
    ]) {
      assert.ok(metrics.includes(name), `/metrics has ${name}`);
    }
    // Every metric the shipped Grafana dashboard queries is exported.
    const dashboard = readFileSync(
      fileURLToPath(new URL('../../../config/grafana-dashboard.json', import.meta.url)),
      'utf8',
    );
    const used = new Set(dashboard.match(/regbackup_[a-z_]+/g));
    assert.ok(used.size >= 10);
    for (const name of used)
      assert.match(metrics, new RegExp(`^# TYPE ${name} `, 'm'), `the dashboard's ${name} is exported`);
    const rpo = Number(/regbackup_rpo_seconds\{target="local"\} (\S+)/.exec(metrics)![1]);
    assert.ok(rpo >= 0 && rpo < 30, `rpo ${rpo}`);
    const health = (await (await fetch(`${url}/health`)).json()) as { status: string };
    assert.equal(health.status, 'OK');

    const push = await until(
      () => influx.events.find((e) => /regbackup_rpo_seconds,target=local value=/.test(String(e.body.raw))),
      'an InfluxDB push',
      10_000,
    );
    assert.equal(push.path, '/api/v2/write?org=o&bucket=b');
    assert.equal(push.headers.authorization, 'Token secret-token');
    assert.match(
      String(push.body.raw),
      /^regbackup_job_runs_total,job=backup,source=skimdb value=\d+ \d{19}$/m,
    );

    w.child.kill('SIGTERM');
    const exit = await w.exited;
    assert.equal(exit.code, 0, w.stderr().slice(-2000));
    assert.match(w.stderr(), /worker stopped/);
  });

  test('in-process, across processes on one host: two backups of the same sources at once — one runs, the other is skipped', async () => {
    f.writeConfig('');
    for (let i = 0; i < 30; i++) {
      const d = path.join(f.registryDir, 'tarballs', `zz-big-${i}`, '-');
      mkdirSync(d, { recursive: true });
      writeFileSync(
        path.join(d, `zz-big-${i}-1.0.0.tgz`),
        Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(2_000_000)]),
      );
    }
    try {
      const [a, b] = await Promise.all([
        f.cli(['jobs', 'run', 'backup', '--json']),
        f.cli(['jobs', 'run', 'backup', '--json']),
      ]);
      const sa = JSON.parse(a.stdout) as { status: string; message: string };
      const sb = JSON.parse(b.stdout) as { status: string; message: string };
      assert.deepEqual(
        [sa.status, sb.status].sort(),
        ['ok', 'skipped'],
        `${a.stdout}\n${b.stdout}\n${a.stderr.slice(-1000)}`,
      );
      assert.match(
        [sa, sb].find((s) => s.status === 'skipped')!.message,
        /a backup of skimdb, tarballs is still running/,
      );
    } finally {
      for (let i = 0; i < 30; i++)
        rmSync(path.join(f.registryDir, 'tarballs', `zz-big-${i}`), { recursive: true, force: true });
    }
  });

  test('jobs run prune (forget by the retention policy, then prune) and jobs run check, in this process', async () => {
    f.writeConfig('retention: { last: 1, hourly: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 }\n');
    const n = (await snapshots()).length;
    assert.ok(n >= 2);
    const prune = await f.cli(['jobs', 'run', 'prune', '--json']);
    assert.equal(prune.code, 0, prune.stderr);
    const p = JSON.parse(prune.stdout) as { status: string; forgotten: number };
    assert.equal(p.status, 'ok');
    assert.equal(p.forgotten, n - 1);
    assert.equal((await snapshots()).length, 1);
    const check = await f.cli(['jobs', 'run', 'check', '--json']);
    assert.equal(check.code, 0, check.stderr);
    assert.equal((JSON.parse(check.stdout) as { status: string }).status, 'ok');
    const js = JSON.parse((await f.cli(['jobs', '--json'])).stdout) as JobsStatus;
    assert.deepEqual(
      js.last.filter((j) => j.job !== 'backup').map((j) => [j.job, j.source, j.lastStatus]),
      [
        ['check', 'aws', 'ok'],
        ['check', 'local', 'ok'],
        ['prune', 'repository', 'ok'],
      ],
    );
  });

  test('SIGTERM while a job runs longer than the grace period: interrupted (nothing committed), exit 0; the running job is listed meanwhile', async () => {
    f.writeConfig(`schedule: { backup: '*/2 * * * * *', timezone: UTC, shutdownGrace: 500ms }\n`);
    for (let i = 0; i < 60; i++) {
      const d = path.join(f.registryDir, 'tarballs', `zz-huge-${i}`, '-');
      mkdirSync(d, { recursive: true });
      writeFileSync(
        path.join(d, `zz-huge-${i}-1.0.0.tgz`),
        Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(3_000_000)]),
      );
    }
    try {
      const count = (await snapshots()).length;
      const w = spawnWorker(f.env);
      await w.waitFor(/backup started/, 30_000);
      await new Promise((r) => setTimeout(r, 400));
      const js = JSON.parse((await f.cli(['jobs', '--json'])).stdout) as JobsStatus;
      assert.equal(js.running.length, 1, JSON.stringify(js.running));
      assert.equal(js.running[0]!.job, 'backup');
      w.child.kill('SIGTERM');
      const exit = await w.exited;
      assert.equal(exit.code, 0, w.stderr().slice(-3000));
      assert.match(w.stderr(), /the grace period is over: interrupting/);
      assert.equal((await snapshots()).length, count, 'nothing was committed');
      const after = JSON.parse((await f.cli(['jobs', '--json'])).stdout) as JobsStatus;
      assert.deepEqual(after.running, []);
    } finally {
      for (let i = 0; i < 60; i++)
        rmSync(path.join(f.registryDir, 'tarballs', `zz-huge-${i}`), { recursive: true, force: true });
    }
  });
});
