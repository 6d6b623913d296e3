import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import S3rver from 's3rver';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { loadIntoCouch } from '../generate/couch.js';
import { writeRegistry } from '../generate/registry.js';
import { startServers, tmpDir } from '../harness/index.js';
import { assertTargetsIntact } from '../helpers/verify.js';
import { BIN, runCli } from '../helpers/cli.js';
import { writeTestConfig } from '../helpers/config.js';

/** An s3rver that can be stopped and started again on the same port and directory (a provider outage). */
async function restartableS3(dir: string) {
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  let server: S3rver | undefined;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    async start() {
      server = new S3rver({ port, address: '127.0.0.1', directory: dir, silent: true });
      await server.run();
    },
    async stop() {
      await server?.close();
      server = undefined;
    },
  };
}

describe('faults during backups', () => {
  let dir: string;
  let servers: Awaited<ReturnType<typeof startServers<{ couchdb: true }>>>;
  let s3: Awaited<ReturnType<typeof restartableS3>>;
  let env: NodeJS.ProcessEnv;
  let configFile: string;

  before(async () => {
    dir = await tmpDir();
    servers = await startServers({ couchdb: true });
    s3 = await restartableS3(path.join(dir, 's3rver'));
    await s3.start();
    const client = new S3Client({
      endpoint: s3.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    await client.send(new CreateBucketCommand({ Bucket: 'backups' }));
    client.destroy();
    await writeRegistry({
      out: path.join(dir, 'registry'),
      packages: 40,
      seed: 11,
      maxVersionsPerPackage: 40,
      tarballVersions: 3,
    });
    await loadIntoCouch(servers.couchdb.url, 'registry', path.join(dir, 'registry'));
    configFile = writeTestConfig(dir, {
      packSize: '1MiB',
      couchdb: servers.couchdb.url,
      tarballs: './registry/tarballs',
      targets: [
        '{ name: local, type: fs, path: ./target-local }',
        `{ name: aws, type: s3, bucket: backups, endpoint: "${s3.endpoint}", forcePathStyle: true, credentials: { accessKeyId: S3RVER, secretAccessKey: S3RVER } }`,
      ],
    });
    env = { REGBACKUP_CONFIG: configFile };
    assert.equal((await runCli(['keys', 'generate', '--out', path.join(dir, 'keys')], { env })).code, 0);
    assert.equal((await runCli(['init'], { env })).code, 0);
  });
  after(async () => {
    await s3.stop();
    await servers.stop();
  });

  test('SIGKILL at random points never damages a target; the next run completes', async () => {
    for (let i = 0; i < 6; i++) {
      const child = spawn(process.execPath, [BIN, 'backup', '--quiet'], {
        env: { ...process.env, ...env },
        stdio: 'ignore',
      });
      const delay = 150 + Math.floor(Math.random() * 2000);
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
      const timer = setTimeout(() => child.kill('SIGKILL'), delay);
      await exited;
      clearTimeout(timer);
      await assertTargetsIntact(configFile, path.join(dir, 'keys/restore.key'));
    }
    const before = await assertTargetsIntact(configFile, path.join(dir, 'keys/restore.key'));
    const r = await runCli(['backup', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const after = await assertTargetsIntact(configFile, path.join(dir, 'keys/restore.key'));
    assert.deepEqual(
      after,
      before.map((n) => n + 1),
    );
  });

  test('a target that dies mid-run: the other completes, the run is partial, the next run catches it up', async () => {
    // New tarballs, enough for the run to be writing packs for a while; the S3 server stops meanwhile.
    const { randomBytes } = await import('node:crypto');
    const { mkdirSync } = await import('node:fs');
    for (let i = 0; i < 60; i++) {
      const d = path.join(dir, 'registry/tarballs', `big-${i}`, '-');
      mkdirSync(d, { recursive: true });
      writeFileSync(
        path.join(d, `big-${i}-1.0.0.tgz`),
        Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(3_000_000)]),
      );
    }
    const child = runCli(['backup', '--json'], { env });
    await new Promise((r) => setTimeout(r, 700));
    await s3.stop();
    const r = await child;
    if (r.code !== 6) console.log('STDERR', r.stderr.slice(-3000));
    assert.equal(r.code, 6, r.stderr);
    const out = JSON.parse(r.stdout) as { targets: { name: string; status: string }[] };
    assert.deepEqual(
      out.targets.map((t) => [t.name, t.status]),
      [
        ['local', 'ok'],
        ['aws', 'behind'],
      ],
    );
    const [localCount] = await assertTargetsIntact(configFile, path.join(dir, 'keys/restore.key'), ['local']);

    await s3.start();
    const r2 = await runCli(['backup', '--json'], { env });
    assert.equal(r2.code, 0, r2.stderr);
    const out2 = JSON.parse(r2.stdout) as {
      targets: { name: string; status: string; caughtUp?: { objects: number } }[];
    };
    const aws = out2.targets.find((t) => t.name === 'aws')!;
    assert.equal(aws.status, 'ok');
    assert.ok(aws.caughtUp && aws.caughtUp.objects > 0, 'aws was caught up from local');
    const counts = await assertTargetsIntact(configFile, path.join(dir, 'keys/restore.key'));
    assert.deepEqual(counts, [localCount! + 1, localCount! + 1]);
  });
});
