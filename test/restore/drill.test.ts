import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { DrillReport } from '../../restore/drill-report.js';
import { makeFixture, startReceiver, type JobsFixture, type Receiver } from '../jobs/fixture.js';

interface DrillOut extends DrillReport {
  stored?: { key: string; targets: string[] };
}

function failed(r: DrillOut): string[] {
  return r.targets.flatMap((t) => [
    ...(t.error ? [`${t.target}: ${t.error}`] : []),
    ...t.checks
      .filter((c) => !c.ok && !c.skipped)
      .map((c) => `${t.target}: [${c.group}] ${c.object}: ${c.check} ${JSON.stringify(c.details ?? [])}`),
  ]);
}

describe('regbackup drill from two targets (fs and s3rver) into a temporary standby', () => {
  let f: JobsFixture;
  let receiver: Receiver;

  before(async () => {
    receiver = await startReceiver();
    f = await makeFixture({ packages: 30 });
    f.writeConfig(`alerts:
  pagerduty: { routingKey: test-routing-key, url: "${receiver.url}/pd" }
  webhook: { url: "${receiver.url}/hook", headers: { X-Test: hook-marker-7f3a } }
  rpoThreshold: 1h
drill: { sample: 20 }
`);
    const b1 = await f.cli(['backup']);
    assert.equal(b1.code, 0, b1.stderr);
    await f.advanceDay(2);
    const b2 = await f.cli(['backup', '--json']);
    assert.equal(b2.code, 0, b2.stderr);
  });
  after(async () => {
    await f.stop();
    await receiver.close();
  });

  test('every verification passes on both targets; RTO and RPO measured; scratch data removed; report stored and listed', async () => {
    const r = await f.cli(['drill', '--json']);
    const out = JSON.parse(r.stdout) as DrillOut;
    assert.deepEqual(failed(out), []);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(out.ok, true);
    assert.equal(out.standby, 'temporary');
    assert.deepEqual(
      out.targets.map((t) => t.target),
      ['local', 'aws'],
    );
    for (const t of out.targets) {
      assert.ok(t.rtoMs! > 0 && t.rpoMs! >= 0, 'RTO and RPO measured');
      assert.ok(t.durationMs! >= t.rtoMs!);
      const checks = (g: string) => t.checks.filter((c) => c.group === g).map((c) => c.check);
      assert.ok(checks('restore').includes('winning revisions'));
      assert.ok(checks('restore').some((c) => /doc_count/.test(c)));
      assert.ok(checks('restore').some((c) => /deleted/.test(c)));
      assert.ok(checks('documents').some((c) => /byte-equal/.test(c)));
      assert.ok(checks('standby').includes('document read by ID'));
      assert.ok(checks('standby').includes('design-document view queried'));
      assert.equal(checks('tarballs').length, 3);
      const bytes = t.checks.find((c) => /byte-equal/.test(c.check))!;
      assert.ok(
        Number(bytes.expected) > 0,
        `some sampled documents were unchanged at the source: ${JSON.stringify(bytes.details)}`,
      );
      const unpack = t.checks.find((c) => /unpack/.test(c.check))!;
      assert.ok(Number(unpack.actual) > 0, 'some tarballs were unpacked');
      assert.ok(t.cleanup.ok && !t.cleanup.kept);
    }
    // Nothing left in the temporary directory for scratch data.
    assert.ok(out.stored && out.stored.targets.length === 2, 'stored on both targets');

    const list = await f.cli(['drills', '--json']);
    assert.equal(list.code, 0, list.stderr);
    const drills = JSON.parse(list.stdout) as {
      drills: { id: string; ok: boolean; targets: { target: string; rtoMs?: number }[] }[];
    };
    assert.equal(drills.drills.length, 1);
    assert.equal(drills.drills[0]!.ok, true);
    const text = await f.cli(['drills']);
    assert.match(text.stdout, /PASSED/);

    // Into a configured drill CouchDB (here the source's server): scratch databases, removed afterwards.
    const dbs = async () =>
      (await (
        await fetch(`${f.couch.baseUrl}/_all_dbs`, {
          headers: {
            authorization: `Basic ${Buffer.from(`${f.couch.admin!.username}:${f.couch.admin!.password}`).toString('base64')}`,
          },
        })
      ).json()) as string[];
    const before = await dbs();
    const configured = await f.cli([
      'drill',
      '--json',
      '--target',
      'aws',
      '--couchdb',
      f.couch.url,
      '--no-store',
    ]);
    assert.equal(configured.code, 0, configured.stderr);
    const c = JSON.parse(configured.stdout) as DrillOut;
    assert.equal(c.standby, 'configured');
    assert.match(c.targets[0]!.standby!.databases[0]!.scratch, /^regbackup-drill-[0-9a-f]{8}-aws-registry$/);
    assert.ok(!JSON.stringify(c).includes(f.couch.admin!.password), 'no password in the report');
    assert.deepEqual(await dbs(), before, 'the scratch databases are gone');

    // A healthy drill raised no alert.
    assert.deepEqual(
      receiver.events.filter((e) => /drill/.test(JSON.stringify(e.body))),
      [],
    );
  });

  test('a tarball corrupted in a pack of one target: that drill fails, names it, and alerts once', async () => {
    // Flip bytes in the middle of the biggest data pack on the local target (tarballs are stored raw, in data packs).
    const packs: { file: string; size: number }[] = [];
    const root = path.join(f.dir, 'target-local', 'data');
    for (const d of readdirSync(root))
      for (const p of readdirSync(path.join(root, d)))
        packs.push({ file: path.join(root, d, p), size: readFileSync(path.join(root, d, p)).length });
    packs.sort((a, b) => b.size - a.size);
    const victim = packs[0]!.file;
    const bytes = readFileSync(victim);
    for (let i = 0; i < 64; i++) bytes[Math.floor(bytes.length / 2) + i]! ^= 0xff;
    writeFileSync(victim, bytes);

    const r = await f.cli(['drill', '--json', '--target', 'local']);
    assert.equal(r.code, 5, r.stderr);
    const out = JSON.parse(r.stdout) as DrillOut;
    assert.equal(out.ok, false);
    const problems = failed(out);
    assert.ok(problems.length > 0);
    assert.ok(problems.every((p) => p.startsWith('local')));
    assert.ok(
      problems.some((p) => /\[restore\].*files written and verified/.test(p)),
      problems.join('\n'),
    );
    assert.ok(
      problems.some(
        (p) => /\[tarballs\].*refer to is present/.test(p) && /in the snapshot but not restored/.test(p),
      ),
      problems.join('\n'),
    );
    assert.equal(out.targets[0]!.rtoMs, undefined, 'no RTO without a verified standby');

    const triggers = () =>
      receiver.events.filter(
        (e) =>
          (e.path === '/pd' &&
            e.body.event_action === 'trigger' &&
            String(e.body.dedup_key).includes('drill-failed:local')) ||
          (e.path === '/hook' && e.body.event === 'trigger' && e.body.problem === 'drill-failed:local'),
      );
    assert.equal(triggers().length, 2, JSON.stringify(receiver.events));
    const pd = triggers().find((e) => e.path === '/pd')!;
    assert.equal(pd.body.routing_key, 'test-routing-key');
    assert.equal((pd.body.payload as { severity: string }).severity, 'critical');
    assert.equal(triggers().find((e) => e.path === '/hook')!.headers['x-test'], 'hook-marker-7f3a');

    // The same failure again: still one incident (no second trigger).
    const again = await f.cli(['drill', '--json', '--target', 'local']);
    assert.equal(again.code, 5);
    assert.equal(triggers().length, 2);

    // The other target restores fine, and its report is stored there too.
    // As the worker's weekly drill job runs it (`jobs run drill` runs the same job in this process).
    const aws = await f.cli(['jobs', 'run', 'drill', '--json', '--target', 'aws']);
    assert.equal(aws.code, 0, aws.stderr);
    const job = JSON.parse(aws.stdout) as {
      status: string;
      targets: { target: string; ok: boolean; rtoMs: number }[];
    };
    assert.equal(job.status, 'ok');
    assert.deepEqual(
      job.targets.map((t) => [t.target, t.ok]),
      [['aws', true]],
    );
    const jobs = JSON.parse((await f.cli(['jobs', '--json'])).stdout) as {
      last: { job: string; source: string; lastStatus: string }[];
    };
    assert.deepEqual(
      jobs.last.filter((j) => j.job === 'drill').map((j) => [j.source, j.lastStatus]),
      [
        ['aws', 'ok'],
        ['local', 'failed'],
      ],
    );
    const health = await f.cli(['check-health']);
    assert.equal(health.code, 2);
    assert.match(health.stdout, /^REGBACKUP CRITICAL - restore drill from local failed: /);
    const list = JSON.parse((await f.cli(['drills', '--json', '--target', 'aws'])).stdout) as {
      drills: { ok: boolean; targets: { target: string }[] }[];
    };
    assert.deepEqual(
      list.drills.map((d) => [d.ok, d.targets.map((t) => t.target).join()]),
      [
        [true, 'local,aws'],
        [false, 'local'],
        [false, 'local'],
        [true, 'aws'],
      ],
    );
  });
});
