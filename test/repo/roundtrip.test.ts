import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { KeyError } from '../../src/errors.js';
import { Fanout } from '../../src/repo/fanout.js';
import { generateKeys } from '../../src/repo/keys.js';
import { BlobReader } from '../../src/repo/reader.js';
import { Repository } from '../../src/repo/repository.js';
import { readAll, writeBuffer, writeStream } from '../../src/repo/stream-ref.js';
import { BlobWriter } from '../../src/repo/writer.js';
import { FsStore } from '../../src/store/fs.js';
import { GcsStore } from '../../src/store/gcs.js';
import { S3Store } from '../../src/store/s3.js';
import type { ObjectStore } from '../../src/store/types.js';
import { startServers, tmpDir } from '../harness/index.js';

/**
 * The repository through every kind of store at once (fs, S3 on s3rver, GCS on the fake): one writer, the same
 * objects on all three, each readable alone; deduplication across runs; post-quantum recipients.
 */
describe('round trip through every store', () => {
  let servers: Awaited<ReturnType<typeof startServers<{ s3: true; gcs: true }>>>;
  let dir: string;
  let stores: ObjectStore[];

  before(async () => {
    servers = await startServers({ s3: true, gcs: true });
    dir = await tmpDir();
    const bucket = await servers.s3.createBucket();
    const gbucket = await servers.gcs.createBucket();
    stores = [
      new FsStore({ name: 'fs', root: path.join(dir, 'fs') }),
      new S3Store({ name: 's3', bucket, prefix: 'repo/', client: new S3Client(servers.s3.clientConfig()) }),
      new GcsStore({
        name: 'gcs',
        bucket: gbucket,
        prefix: 'repo/',
        apiEndpoint: servers.gcs.url,
        projectId: 'test',
      }),
    ];
  });
  after(() => servers.stop());

  for (const postQuantum of [false, true]) {
    test(`random and registry-shaped data, deduplicated across runs${postQuantum ? ', post-quantum recipients' : ''}`, async () => {
      const keys = await generateKeys({ postQuantum });
      const prefix = postQuantum ? 'pq' : 'x';
      const here = stores.map((s) =>
        s instanceof FsStore ? new FsStore({ name: 'fs', root: path.join(dir, `fs-${prefix}`) }) : s,
      );
      // Separate repositories per key set: a prefix per run on the cloud stores.
      const scoped = here.map((s) => (s instanceof FsStore ? s : scopedStore(s, prefix)));
      await Repository.init(scoped, keys.worker, { packSize: 512 * 1024, compressionLevel: 3 });
      const { repo } = await Repository.open(
        scoped,
        { worker: keys.worker },
        { cacheRoot: path.join(dir, `cache-${prefix}`) },
      );
      const index = await repo.loadIndex();
      const random = randomBytes(3_000_000);
      const doc = Buffer.from(
        JSON.stringify({
          _id: 'left-pad',
          versions: Object.fromEntries(
            Array.from({ length: 300 }, (_, i) => [
              `1.0.${i}`,
              { dist: { shasum: randomBytes(20).toString('hex') }, readme: 'naïve 日本語 😀 '.repeat(20) },
            ]),
          ),
        }),
      );
      let writer = new BlobWriter(repo, index, new Fanout(repo.targets), { workers: 2 });
      const refs = [
        await writeBuffer(writer, random, 'bulk'),
        await writeBuffer(writer, doc, 'json'),
        await writeStream(writer, [random.subarray(0, 1_500_000), random.subarray(1_500_000)], 'bulk'),
      ];
      await writer.flush();
      const first = { ...writer.stats };
      await writer.close();
      assert.ok(first.newBytes >= random.length + doc.length);
      // A second run of the same data stores nothing new.
      writer = new BlobWriter(repo, index, new Fanout(repo.targets), { workers: 2 });
      await writeBuffer(writer, random, 'bulk');
      await writeBuffer(writer, doc, 'json');
      await writer.flush();
      assert.equal(writer.stats.newBytes, 0);
      assert.equal(writer.stats.dedupBytes, random.length + doc.length);
      await writer.close();
      repo.close();
      // Each store alone gives everything back (with the restore identity).
      for (const s of scoped) {
        const { repo: r } = await Repository.open(
          [s],
          { restore: keys.restore },
          { cacheRoot: path.join(dir, `rc-${prefix}-${s.name}`) },
        );
        const reader = new BlobReader(r, await r.loadIndex(), [s]);
        assert.deepEqual(await readAll(reader, refs[0]!), random, s.name);
        assert.deepEqual(await readAll(reader, refs[1]!), doc, s.name);
        assert.deepEqual(await readAll(reader, refs[2]!), random, s.name);
        r.close();
      }
    });
  }

  test('init refuses a target that holds another repository, and is harmless when run again', async () => {
    const a = await generateKeys();
    const b = await generateKeys();
    const s = new FsStore({ name: 'fs', root: path.join(dir, 'foreign') });
    assert.deepEqual(
      (await Repository.init([s], a.worker, { packSize: 1 << 20, compressionLevel: 3 })).map((r) => r.status),
      ['created'],
    );
    assert.deepEqual(
      (await Repository.init([s], a.worker, { packSize: 1 << 20, compressionLevel: 3 })).map((r) => r.status),
      ['exists'],
    );
    await assert.rejects(
      Repository.init([s], b.worker, { packSize: 1 << 20, compressionLevel: 3 }),
      (e: Error) => e instanceof KeyError && /written with key/.test(e.message),
    );
    const other = new FsStore({ name: 'other', root: path.join(dir, 'not-empty') });
    await other.put('something/else', Buffer.from('x'));
    await assert.rejects(
      Repository.init([other], a.worker, { packSize: 1 << 20, compressionLevel: 3 }),
      /not empty/,
    );
  });
});

/** The same store under a sub-prefix (the cloud stores take their prefix at construction). */
function scopedStore(s: ObjectStore, sub: string): ObjectStore {
  const k = (key: string) => `${sub}/${key}`;
  return {
    name: s.name,
    location: `${s.location}${sub}/`,
    put: (key, body, opts) => s.put(k(key), body, opts),
    get: (key, range) => s.get(k(key), range),
    getBuffer: (key, range) => s.getBuffer(k(key), range),
    stat: async (key) => {
      const o = await s.stat(k(key));
      return o && { ...o, key };
    },
    list: async function* (prefix) {
      for await (const o of s.list(k(prefix))) yield { ...o, key: o.key.slice(sub.length + 1) };
    },
    delete: (key) => s.delete(k(key)),
    close: () => s.close(),
  };
}
