import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import S3rver from 's3rver';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { loadIntoCouch } from '../../bench/generate/couch.js';
import { writeRegistry } from '../../bench/generate/registry.js';
import { readListing } from '../../src/backup/listing.js';
import type { CouchSourceSnapshot, TarballSourceSnapshot } from '../../src/backup/types.js';
import { loadRestoreIdentity } from '../../src/repo/keys.js';
import { BlobReader } from '../../src/repo/reader.js';
import { Repository } from '../../src/repo/repository.js';
import { listSnapshots, loadSnapshot } from '../../src/repo/snapshot.js';
import { chunkIds, readAll, type StreamRef } from '../../src/repo/stream-ref.js';
import { checkDocEntry } from '../../src/sources/couchdb/index.js';
import { checkEntry } from '../../src/sources/tarballs/source.js';
import { openStore } from '../../src/store/index.js';
import type { ObjectStore } from '../../src/store/types.js';
import { loadConfig } from '../../src/config/load.js';
import { startServers, tmpDir } from '../harness/index.js';
import { BIN, runCli } from '../helpers/cli.js';

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

/**
 * Everything every snapshot of every target needs is there: the manifest verifies, every listing reads, and
 * every blob a listing names is in the index and in a pack that exists on that target.
 */
async function assertTargetsIntact(configFile: string, identityFile: string, only?: string[]): Promise<number[]> {
  const { config } = loadConfig(configFile);
  const restore = await loadRestoreIdentity(identityFile);
  const counts: number[] = [];
  for (const t of config.targets.filter((x) => !only || only.includes(x.name))) {
    const store: ObjectStore = openStore(t, { retry: false });
    const { repo } = await Repository.open([store], { restore }, { cacheRoot: path.join(path.dirname(configFile), `verify-cache-${Math.random()}`) });
    const index = await repo.loadIndex(store);
    const reader = new BlobReader(repo, index, [store]);
    const packs = new Set<string>();
    for await (const o of store.list('')) packs.add(o.key);
    const need = async (ref: StreamRef) => {
      for await (const id of chunkIds(reader, ref)) {
        const loc = index.lookup(id);
        assert.ok(loc, `blob ${id.toString('hex')} of target ${t.name} is in its index`);
        assert.ok(packs.has(`${loc.pack.type === 1 ? 'tree' : 'data'}/${loc.pack.id.slice(0, 2)}/${loc.pack.id}`), `pack ${loc.pack.id} exists on ${t.name}`);
      }
    };
    const snaps = await listSnapshots(store);
    for (const info of snaps) {
      const m = await loadSnapshot(repo, store, info);
      for (const s of m.sources) {
        if (s.kind === 'couchdb') {
          for (const db of (s as CouchSourceSnapshot).databases) {
            if (db.security) await need(db.security);
            for await (const e of readListing(reader, db.listing, checkDocEntry, db.name)) {
              for (const leaf of e.leaves) {
                await need(leaf.body);
                for (const a of leaf.atts ?? []) await need(a.data);
              }
            }
          }
        } else {
          for await (const e of readListing(reader, (s as TarballSourceSnapshot).listing, checkEntry, s.name)) await need(e.data);
        }
      }
    }
    // And the newest snapshot's data really decrypts.
    const last = snaps[snaps.length - 1];
    if (last) {
      const m = await loadSnapshot(repo, store, last);
      const tb = m.sources.find((s) => s.kind === 'tarballs') as TarballSourceSnapshot | undefined;
      if (tb) for await (const e of readListing(reader, tb.listing, checkEntry, 'tarballs')) assert.equal((await readAll(reader, e.data)).length, e.size);
    }
    repo.close();
    counts.push(snaps.length);
  }
  return counts;
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
    const client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    await client.send(new CreateBucketCommand({ Bucket: 'backups' }));
    client.destroy();
    await writeRegistry({ out: path.join(dir, 'registry'), packages: 40, seed: 11, maxVersionsPerPackage: 40, tarballVersions: 3 });
    await loadIntoCouch(servers.couchdb.url, 'registry', path.join(dir, 'registry'));
    configFile = path.join(dir, 'regbackup.yaml');
    writeFileSync(
      configFile,
      `keys: ./keys/worker.key
cache: ./cache
repository: { packSize: 1MiB }
sources:
  couchdb: [{ name: skimdb, url: "${servers.couchdb.url}" }]
  tarballs: [{ name: tarballs, path: ./registry/tarballs }]
targets:
  - { name: local, type: fs, path: ./target-local }
  - { name: aws, type: s3, bucket: backups, endpoint: "${s3.endpoint}", forcePathStyle: true, credentials: { accessKeyId: S3RVER, secretAccessKey: S3RVER } }
`,
    );
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
      const child = spawn(process.execPath, ['--openssl-legacy-provider', BIN, 'backup', '--quiet'], { env: { ...process.env, ...env }, stdio: 'ignore' });
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
    assert.deepEqual(after, before.map((n) => n + 1));
  });

  test('a target that dies mid-run: the other completes, the run is partial, the next run catches it up', async () => {
    // New tarballs, enough for the run to be writing packs for a while; the S3 server stops meanwhile.
    const { randomBytes } = await import('node:crypto');
    const { mkdirSync } = await import('node:fs');
    for (let i = 0; i < 60; i++) {
      const d = path.join(dir, 'registry/tarballs', `big-${i}`, '-');
      mkdirSync(d, { recursive: true });
      writeFileSync(path.join(d, `big-${i}-1.0.0.tgz`), Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(3_000_000)]));
    }
    const child = runCli(['backup', '--json'], { env });
    await new Promise((r) => setTimeout(r, 700));
    await s3.stop();
    const r = await child;
    if (r.code !== 6) console.log('STDERR', r.stderr.slice(-3000));
    assert.equal(r.code, 6, r.stderr);
    const out = JSON.parse(r.stdout) as { targets: { name: string; status: string }[] };
    assert.deepEqual(out.targets.map((t) => [t.name, t.status]), [['local', 'ok'], ['aws', 'behind']]);
    const [localCount] = await assertTargetsIntact(configFile, path.join(dir, 'keys/restore.key'), ['local']);

    await s3.start();
    const r2 = await runCli(['backup', '--json'], { env });
    assert.equal(r2.code, 0, r2.stderr);
    const out2 = JSON.parse(r2.stdout) as { targets: { name: string; status: string; caughtUp?: { objects: number } }[] };
    const aws = out2.targets.find((t) => t.name === 'aws')!;
    assert.equal(aws.status, 'ok');
    assert.ok(aws.caughtUp && aws.caughtUp.objects > 0, 'aws was caught up from local');
    const counts = await assertTargetsIntact(configFile, path.join(dir, 'keys/restore.key'));
    assert.deepEqual(counts, [localCount! + 1, localCount! + 1]);
  });
});
