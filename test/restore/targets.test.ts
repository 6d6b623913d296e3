import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import type { RestoreReport } from '../../restore/types.js';
import { couch, databaseState, makeFixture, type Fixture } from './fixture.js';

async function dropDatabases(f: Fixture): Promise<void> {
  for (const db of ['registry', 'extra']) await couch(f.dest.url, 'DELETE', db);
}

describe('restore from either provider', () => {
  let f: Fixture;
  let s3: S3Client;
  before(async () => {
    f = await makeFixture({ packages: 6 });
    s3 = new S3Client(f.s3.clientConfig());
  });
  after(async () => {
    s3.destroy();
    await f.stop();
  });

  test('a pack missing on the first target and one corrupt there are read from the other, and reported', async () => {
    const list = await s3.send(new ListObjectsV2Command({ Bucket: f.s3Bucket, Prefix: 'regbackup/data/' }));
    const packs = (list.Contents ?? []).map((o) => o.Key!).sort();
    assert.ok(packs.length >= 2, `data packs on aws: ${packs.length}`);
    await s3.send(new DeleteObjectCommand({ Bucket: f.s3Bucket, Key: packs[0] }));
    const obj = await s3.send(new GetObjectCommand({ Bucket: f.s3Bucket, Key: packs[1] }));
    const bytes = Buffer.from(await obj.Body!.transformToByteArray());
    bytes[Math.floor(bytes.length / 2)]! ^= 0x55;
    await s3.send(new PutObjectCommand({ Bucket: f.s3Bucket, Key: packs[1], Body: bytes }));

    const r = await f.cli(['restore', '--to', 'new-primary', '--json']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const rep = JSON.parse(r.stdout) as RestoreReport;
    assert.equal(rep.verified, true);
    assert.deepEqual(rep.targets.used, ['aws', 'offsite']);
    assert.ok(rep.targets.fallbackCount >= 2, `fallbacks: ${rep.targets.fallbackCount}`);
    for (const fb of rep.targets.fallbacks) assert.deepEqual([fb.from, fb.to], ['aws', 'offsite']);
    const reasons = rep.targets.fallbacks.map((fb) => fb.reason).join('\n');
    assert.match(reasons, /does not exist/);
    assert.match(reasons, /failed authentication|does not match its ID/);
    for (const db of ['registry', 'extra'])
      assert.deepEqual(await databaseState(f.dest.url, db), await databaseState(f.source.url, db), db);
    const text = await f.cli(['restore', '--to', 'new-primary', '--dry-run']);
    assert.match(text.stdout, /read from aws then offsite/);
  });

  test('AWS is gone: --from offsite restores from the GCS target alone', async () => {
    await dropDatabases(f);
    await f.s3.stop();
    const t0 = Date.now();
    const r = await f.cli([
      'restore',
      '--from',
      'offsite',
      '--couchdb',
      f.dest.url,
      '--tarballs',
      path.join(f.dir, 'from-offsite'),
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const rep = JSON.parse(r.stdout) as RestoreReport;
    assert.equal(rep.verified, true);
    assert.deepEqual(rep.targets.used, ['offsite']);
    assert.equal(rep.targets.metadata, 'offsite');
    assert.equal(rep.targets.fallbackCount, 0);
    assert.ok(rep.tarballs[0]!.files > 0);
    for (const db of ['registry', 'extra'])
      assert.deepEqual(await databaseState(f.dest.url, db), await databaseState(f.source.url, db), db);
    assert.ok(Date.now() - t0 < 30_000);
  });

  test('AWS is gone and no --from: the restore says so and uses the target that answers', async () => {
    await dropDatabases(f);
    const r = await f.cli(['restore', '--couchdb', f.dest.url, '--db', 'extra', '--json']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const rep = JSON.parse(r.stdout) as RestoreReport;
    assert.deepEqual(rep.targets.used, ['offsite']);
    assert.equal(rep.targets.unreachable[0]?.target, 'aws');
    assert.match(r.stderr, /target aws cannot be read/);
  });
});
