import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadIntoCouch } from '../generate/couch.js';
import { writeRegistry } from '../generate/registry.js';
import { runBackup } from '../../src/backup/run.js';
import { loadConfig } from '../../src/config/load.js';
import { ExitCode } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { PIECE_SIZE } from '../../src/repo/pack-protocol.js';
import { startServers, tmpDir } from '../harness/index.js';
import { runCli } from '../helpers/cli.js';

/**
 * Whole backup runs (CouchDB and a tarball store, to a directory and to S3) with a tarball that changes while
 * it is read, then restores by the real binary. The run is done in this process so that the writer's test
 * hook can change the file while the worker reading it waits for this thread: no timing involved.
 */
function walk(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...walk(dir, r));
    else out.push(r);
  }
  return out.sort();
}

const tarball = (size: number) => Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(size - 2)]);

describe('a backup run with a tarball that changes while it is read', () => {
  let dir: string;
  let servers: Awaited<ReturnType<typeof startServers<{ couchdb: true; s3: true }>>>;
  let configFile: string;
  let store: string;
  const env = () => ({ REGBACKUP_CONFIG: configFile, REGBACKUP_LOG_LEVEL: 'warn' });
  const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const rel = 'changing/-/changing-1.0.0.tgz';
  const full = () => path.join(store, rel);

  before(async () => {
    dir = await tmpDir();
    servers = await startServers({ couchdb: true, s3: true });
    const bucket = await servers.s3.createBucket();
    await writeRegistry({
      out: path.join(dir, 'registry'),
      packages: 8,
      seed: 3,
      maxVersionsPerPackage: 5,
      tarballVersions: 2,
    });
    await loadIntoCouch(servers.couchdb.url, 'registry', path.join(dir, 'registry'));
    store = path.join(dir, 'registry/tarballs');
    configFile = path.join(dir, 'regbackup.yaml');
    writeFileSync(
      configFile,
      `keys: ${dir}/keys/worker.key
identity: ${dir}/keys/restore.key
cache: ${dir}/cache
sources:
  couchdb: [{ name: skimdb, url: "${servers.couchdb.url}" }]
  tarballs: [{ name: tarballs, path: ${store} }]
targets:
  - { name: local, type: fs, path: ${dir}/target-local }
  - { name: aws, type: s3, bucket: ${bucket}, endpoint: "${servers.s3.endpoint}", forcePathStyle: true, region: us-east-1, credentials: { accessKeyId: S3RVER, secretAccessKey: S3RVER } }
`,
    );
    assert.equal(
      (await runCli(['keys', 'generate', '--out', path.join(dir, 'keys')], { env: env() })).code,
      0,
    );
    const init = await runCli(['init'], { env: env() });
    assert.equal(init.code, 0, init.stderr);
  });
  after(() => servers.stop());

  /** Restores the latest snapshot's tarballs from `from` into a fresh directory (the real binary). */
  async function restoreTarballs(from: string): Promise<string> {
    const dest = path.join(await tmpDir(), 'tarballs');
    const r = await runCli(['restore', '--tarballs', dest, '--from', from], { env: env() });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    return dest;
  }

  test('a tarball that keeps growing: reported, exit 6; every other file restores', async () => {
    mkdirSync(path.dirname(full()), { recursive: true });
    writeFileSync(full(), tarball(3 * PIECE_SIZE));
    const r = await runBackup(loadConfig(configFile).config, {
      logger,
      beforeFileBatch: (file) => {
        if (file === full()) appendFileSync(file, randomBytes(50_000));
      },
    });
    assert.equal(r.exitCode, ExitCode.partial);
    assert.ok(r.snapshot, 'the snapshot is committed');
    const f = r.findings.filter((x) => x.code === 'tarball-inconsistent');
    assert.equal(f.length, 1, JSON.stringify(r.findings));
    assert.equal(f[0]!.object, rel);
    assert.equal(f[0]!.severity, 'error');
    assert.deepEqual(
      r.findings.filter((x) => x.severity === 'error' && x.code !== 'tarball-inconsistent'),
      [],
      'nothing else is wrong',
    );

    const others = walk(store).filter((p) => p !== rel);
    assert.ok(others.length > 5);
    for (const target of ['local', 'aws']) {
      const dest = await restoreTarballs(target);
      assert.deepEqual(walk(dest), others, `${target}: every other file, and not the changing one`);
      for (const p of others)
        assert.ok(readFileSync(path.join(dest, p)).equals(readFileSync(path.join(store, p))), p);
    }
  });

  test('a tarball rewritten once during its read: read again, exit 0, restored whole as rewritten', async () => {
    const v2 = tarball(2 * PIECE_SIZE + 4321);
    let changed = false;
    const r = await runBackup(loadConfig(configFile).config, {
      logger,
      beforeFileBatch: (file) => {
        if (file !== full() || changed) return;
        changed = true;
        writeFileSync(file, v2);
      },
    });
    assert.ok(changed, 'the file was read (it changed since the last run)');
    assert.deepEqual(
      r.findings.filter((x) => x.severity !== 'info'),
      [],
    );
    assert.equal(r.exitCode, ExitCode.ok);
    for (const target of ['local', 'aws']) {
      const dest = await restoreTarballs(target);
      assert.deepEqual(walk(dest), walk(store));
      assert.ok(readFileSync(path.join(dest, rel)).equals(v2), `${target}: the rewritten version, whole`);
    }
  });
});
