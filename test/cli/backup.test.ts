import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadIntoCouch } from '../generate/couch.js';
import { writeRegistry } from '../generate/registry.js';
import { freePort, sleep, startServers, tmpDir, type CouchServer, type S3Server } from '../harness/index.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { startReceiver, type Receiver } from '../jobs/fixture.js';
import { FileLocks } from '../../jobs/locks.js';

/**
 * A configuration for the test servers; secrets come from the environment, as an operator would do. The
 * CouchDB host and the source's RPO threshold come from the environment too (a dead port, a tiny RPO).
 */
function configYaml(dir: string, s3: S3Server, bucket: string, webhook: string): string {
  return `
keys: ./keys/worker.key
cache: ./cache
sources:
  couchdb:
    - name: skimdb
      url: "http://\${COUCH_USER}:\${COUCH_PASSWORD}@\${COUCH_HOST}"
      databases: ["*"]
      rpoThreshold: "\${SKIMDB_RPO:-2h}"
  tarballs:
    - name: tarballs
      path: ./registry/tarballs
targets:
  - name: local
    type: fs
    path: ./target-local
  - name: aws
    type: s3
    bucket: ${bucket}
    endpoint: ${s3.endpoint}
    forcePathStyle: true
    region: us-east-1
    prefix: regbackup/
    credentials: { accessKeyId: "\${AWS_KEY}", secretAccessKey: "\${AWS_SECRET}" }
alerts:
  webhook: { url: "${webhook}/hook" }
`;
}

function couchHost(couch: CouchServer): string {
  return new URL(couch.baseUrl).host;
}

interface SnapshotRow {
  id: string;
  sources: { name: string; carriedFrom?: string; databases?: { name: string; carriedFrom?: string }[] }[];
}

async function snapshotRows(env: NodeJS.ProcessEnv, target: string): Promise<SnapshotRow[]> {
  const s = await runCli(['snapshots', '--json', '--target', target], { env });
  assert.equal(s.code, 0, s.stderr);
  return (JSON.parse(s.stdout) as { snapshots: SnapshotRow[] }).snapshots;
}

/** `check-health`: one Nagios line, its status and exit code. */
async function health(env: NodeJS.ProcessEnv, ...args: string[]): Promise<CliResult> {
  const r = await runCli(['check-health', ...args], { env });
  assert.match(r.stdout, /^REGBACKUP (OK|WARNING|CRITICAL|UNKNOWN) - /, r.stdout + r.stderr);
  return r;
}

describe('regbackup backup through the CLI, against real servers', () => {
  let dir: string;
  let servers: Awaited<ReturnType<typeof startServers<{ couchdb: true; s3: true; redis: true }>>>;
  let env: NodeJS.ProcessEnv;
  let secrets: string[];
  let rx: Receiver;
  /** The snapshot of the last backup that read every source. */
  let lastGood: string;

  const hookEvents = (event: 'trigger' | 'resolve', key: string) =>
    rx.events.filter((e) => e.body.event === event && e.body.dedupKey === `regbackup:${key}`);

  before(async () => {
    dir = await tmpDir();
    servers = await startServers({ couchdb: true, s3: true, redis: true });
    rx = await startReceiver();
    await writeRegistry({
      out: path.join(dir, 'registry'),
      packages: 12,
      seed: 7,
      maxVersionsPerPackage: 20,
      tarballVersions: 20,
    });
    await loadIntoCouch(servers.couchdb.url, 'registry', path.join(dir, 'registry'));
    const bucket = await servers.s3.createBucket();
    writeFileSync(path.join(dir, 'regbackup.yaml'), configYaml(dir, servers.s3, bucket, rx.url));
    env = {
      REGBACKUP_CONFIG: path.join(dir, 'regbackup.yaml'),
      COUCH_HOST: couchHost(servers.couchdb),
      COUCH_USER: servers.couchdb.admin!.username,
      COUCH_PASSWORD: servers.couchdb.admin!.password,
      AWS_KEY: servers.s3.credentials.accessKeyId,
      AWS_SECRET: servers.s3.credentials.secretAccessKey,
    };
  });
  after(async () => {
    await servers.stop();
    await rx.close();
  });

  test('keys generate, init (twice), backup, snapshots — and no secret in any output', async () => {
    const gen = await runCli(['keys', 'generate', '--out', path.join(dir, 'keys')], { env });
    assert.equal(gen.code, 0, gen.stderr);
    const worker = JSON.parse(readFileSync(path.join(dir, 'keys/worker.key'), 'utf8')) as Record<
      string,
      string
    >;
    const restore = readFileSync(path.join(dir, 'keys/restore.key'), 'utf8');
    secrets = [
      servers.couchdb.admin!.password,
      worker.repositorySecret!,
      worker.signingKey!,
      worker.metadataIdentity!,
      /AGE-SECRET-KEY-1\S+/.exec(restore)![0],
    ];
    assert.match(gen.stdout, /recipient:\s+age1/);

    const init1 = await runCli(['init'], { env });
    assert.equal(init1.code, 0, init1.stderr);
    assert.match(init1.stdout, /local\s+initialized/);
    const init2 = await runCli(['init', '--json'], { env });
    assert.equal(init2.code, 0, init2.stderr);
    assert.deepEqual(
      (JSON.parse(init2.stdout) as { targets: { status: string }[] }).targets.map((t) => t.status),
      ['exists', 'exists'],
    );

    const b1 = await runCli(['backup', '--json', '--debug'], { env });
    assert.equal(b1.code, 0, b1.stderr);
    const r1 = JSON.parse(b1.stdout) as {
      snapshot: { id: string };
      targets: { name: string; status: string }[];
      sources: {
        name: string;
        files?: number;
        databases?: { name: string; docCount: number; mode: string }[];
      }[];
      findings: unknown[];
    };
    assert.deepEqual(
      r1.targets.map((t) => [t.name, t.status]),
      [
        ['local', 'ok'],
        ['aws', 'ok'],
      ],
    );
    const couch = r1.sources.find((s) => s.name === 'skimdb')!;
    assert.equal(couch.databases!.find((d) => d.name === 'registry')!.docCount, 12);
    assert.ok(r1.sources.find((s) => s.name === 'tarballs')!.files! > 0);
    assert.deepEqual(r1.findings, []);

    const b2 = await runCli(['backup'], { env });
    assert.equal(b2.code, 0, b2.stderr);
    assert.match(b2.stdout, /registry: 12 docs.*incremental/);

    for (const target of ['local', 'aws']) {
      const s = await runCli(['snapshots', '--json', '--target', target], { env });
      assert.equal(s.code, 0, s.stderr);
      const list = (JSON.parse(s.stdout) as { snapshots: { id: string }[] }).snapshots;
      assert.equal(list.length, 2);
      assert.equal(list[0]!.id, r1.snapshot.id);
    }
    const cc = await runCli(['config', 'check', '--json'], { env });
    for (const out of [gen, init1, init2, b1, b2, cc]) {
      for (const secret of secrets) {
        assert.ok(!out.stdout.includes(secret), 'secret on stdout');
        assert.ok(!out.stderr.includes(secret), 'secret on stderr');
      }
    }
    assert.match(cc.stdout, /\[redacted\]/);
  });

  test('a wrong CouchDB password (401): exit 3, the source shown carried over, check-health CRITICAL until a good run', async () => {
    lastGood = (await snapshotRows(env, 'local')).at(-1)!.id;
    assert.equal((await health(env)).code, 0, 'healthy before');
    const r = await runCli(['backup', '--json'], { env: { ...env, COUCH_PASSWORD: 'wrong-password-123' } });
    assert.equal(r.code, 3, r.stderr);
    const out = JSON.parse(r.stdout) as {
      exitCode: number;
      snapshot: { id: string };
      findings: { severity: string; code: string; source: string; message: string }[];
      sources: { name: string; carriedFrom?: string }[];
    };
    assert.equal(out.exitCode, 3);
    const f = out.findings.find((x) => x.source === 'skimdb')!;
    assert.deepEqual([f.severity, f.code], ['error', 'source-failed']);
    assert.match(f.message, /401|credentials|refused/i);
    // The snapshot is still complete: the CouchDB source is carried over from the snapshot it was last read in.
    assert.equal(out.sources.find((s) => s.name === 'skimdb')!.carriedFrom, lastGood);
    assert.equal(out.sources.find((s) => s.name === 'tarballs')!.carriedFrom, undefined);
    assert.ok(!r.stdout.includes('wrong-password-123') && !r.stderr.includes('wrong-password-123'));

    // `snapshots` shows it as carried over, in JSON and text, on every target.
    for (const target of ['local', 'aws']) {
      const latest = (await snapshotRows(env, target)).at(-1)!;
      assert.equal(latest.id, out.snapshot.id);
      assert.equal(latest.sources.find((s) => s.name === 'skimdb')!.carriedFrom, lastGood);
    }
    const text = await runCli(['snapshots'], { env });
    assert.match(
      text.stdout.trim().split('\n').at(-1)!,
      new RegExp(`skimdb\\[NOT READ, carried over from ${lastGood.slice(0, 12)}: registry: 12 docs`),
    );

    // A backup by hand is seen by check-health, and --alert raises the incident once.
    const crit = await health(env, '--alert');
    assert.equal(crit.code, 2, crit.stdout);
    assert.match(
      crit.stdout,
      /^REGBACKUP CRITICAL - .*could not read source skimdb \(its data of an earlier snapshot was carried over\): .*401/,
    );
    assert.equal(hookEvents('trigger', 'source-failed:skimdb').length, 1);
    assert.ok(!crit.stdout.includes('wrong-password-123'));

    // A run of the other sources only does not clear it: the source still has not been read.
    const others = await runCli(['backup', '--source', 'tarballs', '--quiet'], { env });
    assert.equal(others.code, 0, others.stderr);
    const still = await health(env, '--alert');
    assert.equal(still.code, 2, still.stdout);
    assert.match(still.stdout, /the last backup run that included source skimdb \(.*\) failed for it: .*401/);
    assert.equal(hookEvents('trigger', 'source-failed:skimdb').length, 1, 'still the same incident');

    // A good run clears it (and resolves the incident).
    const good = await runCli(['backup', '--quiet'], { env });
    assert.equal(good.code, 0, good.stderr);
    lastGood = (await snapshotRows(env, 'local')).at(-1)!.id;
    const ok = await health(env, '--alert');
    assert.equal(ok.code, 0, ok.stdout);
    assert.equal(hookEvents('resolve', 'source-failed:skimdb').length, 1);
  });

  test('CouchDB unreachable (a dead port): exit 3 twice, both runs carry the source over from the last good one; check-health CRITICAL, then OK', async () => {
    const dead = { ...env, COUCH_HOST: `127.0.0.1:${await freePort()}` };
    for (let i = 0; i < 2; i++) {
      const r = await runCli(['backup', '--json'], { env: dead });
      assert.equal(r.code, 3, r.stderr);
      const out = JSON.parse(r.stdout) as {
        findings: { code: string; source: string; message: string }[];
        sources: { name: string; carriedFrom?: string }[];
      };
      assert.match(
        out.findings.find((f) => f.source === 'skimdb' && f.code === 'source-failed')!.message,
        /cannot reach CouchDB/,
      );
      assert.equal(out.sources.find((s) => s.name === 'skimdb')!.carriedFrom, lastGood);
    }
    // With the databases named in the configuration (no _all_dbs to fail), every database failing is the
    // source failing: one finding for the source, not a run that looks partial with each database carried.
    writeFileSync(
      path.join(dir, 'named.yaml'),
      readFileSync(path.join(dir, 'regbackup.yaml'), 'utf8').replace(
        'databases: ["*"]',
        'databases: [registry]',
      ),
    );
    const named = await runCli(['backup', '--json'], {
      env: { ...dead, REGBACKUP_CONFIG: path.join(dir, 'named.yaml') },
    });
    assert.equal(named.code, 3, named.stderr);
    const out = JSON.parse(named.stdout) as {
      findings: { code: string; source: string; message: string }[];
      sources: { name: string; carriedFrom?: string }[];
    };
    assert.deepEqual(
      out.findings.map((f) => [f.source, f.code]),
      [['skimdb', 'source-failed']],
    );
    assert.match(
      out.findings[0]!.message,
      /no database of skimdb could be read \(1\): .*cannot reach CouchDB/,
    );
    assert.equal(out.sources.find((s) => s.name === 'skimdb')!.carriedFrom, lastGood);
    const latest = (await snapshotRows(env, 'aws')).at(-1)!;
    assert.equal(latest.sources.find((s) => s.name === 'skimdb')!.carriedFrom, lastGood);

    const crit = await health(env);
    assert.equal(crit.code, 2, crit.stdout);
    assert.match(crit.stdout, /could not read source skimdb .*cannot reach CouchDB/);
    assert.doesNotMatch(crit.stdout, /source tarballs/);

    const good = await runCli(['backup', '--quiet'], { env });
    assert.equal(good.code, 0, good.stderr);
    lastGood = (await snapshotRows(env, 'local')).at(-1)!.id;
    assert.equal((await health(env)).code, 0);
  });

  test('RPO of freshly read data: runs of the other sources only keep the snapshots new, yet a source not read for longer than its threshold is reported', async () => {
    const r = await runCli(['backup', '--source', 'tarballs', '--quiet'], { env });
    assert.equal(r.code, 0, r.stderr);
    // Within its threshold (2h), all is well: the last run was good and every snapshot is new.
    assert.equal((await health(env)).code, 0);
    // Its data is now older than 1 s (the newest snapshot, of the tarballs only, is not).
    await sleep(1100);
    const tiny = { ...env, SKIMDB_RPO: '1s' };
    const crit = await health(tiny, '--alert');
    assert.equal(crit.code, 2, crit.stdout);
    assert.match(
      crit.stdout,
      new RegExp(
        // The threshold came from ${SKIMDB_RPO}: every ${VAR} value is redacted in output, whatever it holds.
        // Its age: seconds, or minutes on a loaded machine (the source was read by an earlier test).
        `the newest data read from source skimdb is \\d+[sm] old \\(threshold \\[redacted\\]; snapshot ${lastGood.slice(0, 12)} on (local|aws)\\)`,
      ),
    );
    assert.doesNotMatch(crit.stdout, /newest snapshot on|source tarballs/);
    assert.equal(hookEvents('trigger', 'source-rpo:skimdb').length, 1);
    // A run that reads it clears it (checked against the usual threshold: any run takes longer than 1 s).
    assert.equal((await runCli(['backup', '--quiet'], { env })).code, 0);
    lastGood = (await snapshotRows(env, 'local')).at(-1)!.id;
    assert.equal((await health(env, '--alert')).code, 0);
    assert.equal(hookEvents('resolve', 'source-rpo:skimdb').length, 1);
  });

  test('a fresh repository whose first backup had CouchDB down: exit 3, only the tarballs stored, and check-health is not OK (also without the run records)', async () => {
    writeFileSync(
      path.join(dir, 'fresh.yaml'),
      readFileSync(path.join(dir, 'regbackup.yaml'), 'utf8')
        .replace('cache: ./cache', 'cache: ./cache-fresh')
        .replace(
          /targets:[\s\S]*?alerts:/,
          'targets:\n  - { name: fresh, type: fs, path: ./target-fresh }\nalerts:',
        ),
    );
    const fresh = { ...env, REGBACKUP_CONFIG: path.join(dir, 'fresh.yaml') };
    assert.equal((await runCli(['init'], { env: fresh })).code, 0);
    const dead = { ...fresh, COUCH_HOST: `127.0.0.1:${await freePort()}` };
    const r = await runCli(['backup', '--json'], { env: dead });
    assert.equal(r.code, 3, r.stderr);
    const rows = await snapshotRows(fresh, 'fresh');
    assert.equal(rows.length, 1);
    assert.deepEqual(
      rows[0]!.sources.map((s) => s.name),
      ['tarballs'],
    );
    const crit = await health(fresh);
    assert.equal(crit.code, 2, crit.stdout);
    assert.match(crit.stdout, /could not read source skimdb \(it is not in the snapshot\)/);
    assert.match(crit.stdout, /no snapshot holds data read from source skimdb \(never backed up\)/);
    // Read from the repository itself: without the run records (another host, a lost cache) it is still seen.
    rmSync(path.join(dir, 'cache-fresh'), { recursive: true, force: true });
    const still = await health(fresh);
    assert.equal(still.code, 2, still.stdout);
    assert.match(still.stdout, /no snapshot holds data read from source skimdb \(never backed up\)/);
    // The first good backup makes it healthy.
    assert.equal((await runCli(['backup', '--quiet'], { env: fresh })).code, 0);
    const ok = await health(fresh);
    assert.equal(ok.code, 0, ok.stdout);
  });

  test('with queue.redis and Redis down, a backup by hand records its outcome in the cache directory; check-health sees it once Redis answers', async () => {
    writeFileSync(
      path.join(dir, 'queue.yaml'),
      `${readFileSync(path.join(dir, 'regbackup.yaml'), 'utf8')}queue: { redis: "\${REDIS_URL}", prefix: health-test }\n`,
    );
    const queue = { ...env, REGBACKUP_CONFIG: path.join(dir, 'queue.yaml') };
    const down = { ...queue, REDIS_URL: `redis://127.0.0.1:${await freePort()}` };
    const up = { ...queue, REDIS_URL: servers.redis.url };
    assert.equal((await health(up)).code, 0);
    const r = await runCli(['backup', '--quiet'], { env: { ...down, COUCH_PASSWORD: 'wrong-password-123' } });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /recording the outcome of this run in the cache directory/);
    // Redis down: check-health cannot read the state, and says so.
    const unknown = await health(down);
    assert.equal(unknown.code, 3, unknown.stdout);
    assert.match(unknown.stdout, /^REGBACKUP UNKNOWN - Redis at 127\.0\.0\.1:\d+ does not answer/);
    // Redis back (its state older than the run): the run recorded in the cache directory counts.
    const crit = await health(up);
    assert.equal(crit.code, 2, crit.stdout);
    assert.match(crit.stdout, /the last backup by hand \(.*\) could not read source skimdb/);
    // A good run, recorded in Redis, is newer: OK again.
    assert.equal((await runCli(['backup', '--quiet'], { env: up })).code, 0);
    lastGood = (await snapshotRows(env, 'local')).at(-1)!.id;
    const ok = await health(up);
    assert.equal(ok.code, 0, ok.stdout);
  });

  test("a backup by hand takes the worker's source locks: a source another run is backing up is refused, the others go on", async () => {
    // Another run (here: this test process, alive) holds the lock of the tarball source, as the worker would.
    const locks = new FileLocks(path.join(dir, 'cache'));
    assert.equal(await locks.acquire(['source:tarballs'], 'run-by-the-worker', 60_000), true);
    try {
      const busy = await runCli(['backup'], { env });
      assert.equal(busy.code, 3, busy.stderr);
      assert.match(busy.stderr, /a backup of tarballs is running \(run-by-the-worker\)/);
      const other = await runCli(['backup', '--source', 'skimdb', '--quiet'], { env });
      assert.equal(other.code, 0, other.stderr);
      // Its own locks are released at the end; the worker's is untouched.
      assert.deepEqual(await locks.held(), { 'source:tarballs': 'run-by-the-worker' });
    } finally {
      await locks.release(['source:tarballs'], 'run-by-the-worker');
    }
    const free = await runCli(['backup', '--quiet'], { env });
    assert.equal(free.code, 0, free.stderr);
  });

  test('a configuration with a wrong type, an unknown target type and an unset variable: exit 2, all three named', async () => {
    writeFileSync(
      path.join(dir, 'bad.yaml'),
      'keys: ./k\nsources:\n  couchdb: [{ name: a, url: "http://u:${NOT_SET_ANYWHERE}@x:5984", concurrency: "many" }]\ntargets:\n  - { name: t1, type: ftp, bucket: x }\n',
    );
    const r = await runCli(['config', 'check', '--config', path.join(dir, 'bad.yaml')]);
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /sources\.couchdb\[0\]\.url: environment variable \$\{NOT_SET_ANYWHERE\} is not set/,
    );
    assert.match(r.stderr, /sources\.couchdb\[0\]\.concurrency: got "many", expected number/);
    assert.match(r.stderr, /targets\[0\]\.type: got "ftp", expected one of s3, gcs, fs/);
  });
});
