import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadIntoCouch } from '../../bench/generate/couch.js';
import { writeRegistry } from '../../bench/generate/registry.js';
import { startServers, tmpDir, type CouchServer, type S3Server } from '../harness/index.js';
import { runCli } from '../helpers/cli.js';
import { FileLocks } from '../../jobs/locks.js';

/** A configuration for the test servers; secrets come from the environment, as an operator would do. */
function configYaml(dir: string, couch: CouchServer, s3: S3Server, bucket: string): string {
  const u = new URL(couch.baseUrl);
  return `
keys: ./keys/worker.key
cache: ./cache
sources:
  couchdb:
    - name: skimdb
      url: "http://\${COUCH_USER}:\${COUCH_PASSWORD}@${u.host}"
      databases: ["*"]
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
`;
}

describe('regbackup backup through the CLI, against real servers', () => {
  let dir: string;
  let servers: Awaited<ReturnType<typeof startServers<{ couchdb: true; s3: true }>>>;
  let env: NodeJS.ProcessEnv;
  let secrets: string[];

  before(async () => {
    dir = await tmpDir();
    servers = await startServers({ couchdb: true, s3: true });
    await writeRegistry({
      out: path.join(dir, 'registry'),
      packages: 12,
      seed: 7,
      maxVersionsPerPackage: 20,
      tarballVersions: 20,
    });
    await loadIntoCouch(servers.couchdb.url, 'registry', path.join(dir, 'registry'));
    const bucket = await servers.s3.createBucket();
    writeFileSync(path.join(dir, 'regbackup.yaml'), configYaml(dir, servers.couchdb, servers.s3, bucket));
    env = {
      REGBACKUP_CONFIG: path.join(dir, 'regbackup.yaml'),
      COUCH_USER: servers.couchdb.admin!.username,
      COUCH_PASSWORD: servers.couchdb.admin!.password,
      AWS_KEY: servers.s3.credentials.accessKeyId,
      AWS_SECRET: servers.s3.credentials.secretAccessKey,
    };
  });
  after(() => servers.stop());

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

  test('a wrong CouchDB password: the run is partial (6), names the source, shows no password', async () => {
    const r = await runCli(['backup', '--json'], { env: { ...env, COUCH_PASSWORD: 'wrong-password-123' } });
    assert.equal(r.code, 6, r.stderr);
    const out = JSON.parse(r.stdout) as {
      findings: { severity: string; source: string; message: string }[];
      sources: { name: string; carriedFrom?: string }[];
    };
    const f = out.findings.find((x) => x.source === 'skimdb')!;
    assert.equal(f.severity, 'error');
    assert.match(f.message, /401|credentials|refused/i);
    // The snapshot is still complete: the CouchDB source is carried over from the previous one.
    assert.ok(out.sources.find((s) => s.name === 'skimdb')!.carriedFrom);
    assert.ok(!r.stdout.includes('wrong-password-123') && !r.stderr.includes('wrong-password-123'));
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
