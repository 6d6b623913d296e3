import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Encrypter, generateX25519Identity, identityToRecipient } from 'age-encryption';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import nano from 'nano';
import {
  ageDecrypt,
  ageEncrypt,
  ageKeygen,
  ageRecipientOf,
  tmpDir,
  useServers,
  writeIdentityFile,
} from './index.js';

describe('harness: CouchDB (express-pouchdb)', () => {
  const servers = useServers({ couchdb: true });

  it('creates a database, inserts and reads a document through nano', async () => {
    const couch = nano(servers.couchdb.url);
    await couch.db.create('smoke');
    const db = couch.use<{ name: string }>('smoke');
    const ins = await db.insert({ name: 'left-pad' }, 'left-pad');
    assert.equal(ins.ok, true);
    const doc = await db.get('left-pad');
    assert.equal(doc.name, 'left-pad');
    assert.ok(doc._rev.startsWith('1-'));
    const info = await db.info();
    assert.equal(info.doc_count, 1);
  });

  it('has a server admin: a wrong password gets 401, anonymous database creation 401 (not a crash)', async () => {
    const { admin } = servers.couchdb;
    assert.ok(admin);
    const wrong = nano(servers.couchdb.urlWith({ username: admin.username, password: 'wrong' }));
    await assert.rejects(wrong.db.list(), (err: { statusCode?: number }) => err.statusCode === 401);
    const anonymous = nano(servers.couchdb.baseUrl);
    await assert.rejects(
      anonymous.db.create('nope'),
      (err: { statusCode?: number }) => err.statusCode === 401,
    );
    // Anonymous reads of an unsecured database work, as in CouchDB 2.x.
    const doc = await anonymous.use<{ name: string }>('smoke').get('left-pad');
    assert.equal(doc.name, 'left-pad');
    const session = await fetch(`${servers.couchdb.baseUrl}/_session`, {
      headers: {
        authorization: `Basic ${Buffer.from(`${admin.username}:${admin.password}`).toString('base64')}`,
      },
    });
    assert.deepEqual(((await session.json()) as { userCtx: unknown }).userCtx, {
      name: 'admin',
      roles: ['_admin'],
    });
  });

  it('answers _changes with integer sequences, and refuses filter=_selector instead of crashing', async () => {
    const res = await fetch(`${servers.couchdb.url.replace(/\/\/[^@]*@/, '//')}/smoke/_changes`);
    const body = (await res.json()) as { last_seq: unknown };
    assert.equal(typeof body.last_seq, 'number');
    const sel = await fetch(`${servers.couchdb.baseUrl}/smoke/_changes?filter=_selector`, { method: 'POST' });
    assert.equal(sel.status, 400);
  });
});

describe('harness: S3 (s3rver)', () => {
  const servers = useServers({ s3: true });

  it('puts, gets and lists (with truncated pages) through @aws-sdk/client-s3', async () => {
    const bucket = await servers.s3.createBucket();
    const client = new S3Client(servers.s3.clientConfig());
    try {
      const body = randomBytes(1000);
      for (let i = 0; i < 5; i++) {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: `k/${i}`, Body: body }));
      }
      const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'k/3' }));
      assert.deepEqual(Buffer.from(await got.Body!.transformToByteArray()), body);
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: 'k/', MaxKeys: 2, ContinuationToken: token }),
        );
        keys.push(...(page.Contents ?? []).map((o) => o.Key!));
        token = page.NextContinuationToken;
      } while (token);
      assert.deepEqual(keys, ['k/0', 'k/1', 'k/2', 'k/3', 'k/4']);
    } finally {
      client.destroy();
    }
  });
});

describe('harness: Redis (BullMQ)', () => {
  const servers = useServers({ redis: true });

  it('runs one job through a BullMQ Queue and Worker', async () => {
    const connection = new Redis(servers.redis.url, { maxRetriesPerRequest: null });
    const workerConnection = new Redis(servers.redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue('smoke', { connection });
    let worker: Worker | undefined;
    try {
      const done = new Promise<unknown>((resolve, reject) => {
        worker = new Worker('smoke', async (job) => ({ doubled: (job.data as { n: number }).n * 2 }), {
          connection: workerConnection,
        });
        worker.on('completed', (_job, result) => resolve(result));
        worker.on('failed', (_job, err) => reject(err));
      });
      await queue.add('double', { n: 21 });
      assert.deepEqual(await done, { doubled: 42 });
    } finally {
      await worker?.close();
      await queue.close();
      connection.disconnect();
      workerConnection.disconnect();
    }
  });
});

describe('harness: age', () => {
  it('encrypts with the CLI and decrypts with the CLI', async (t) => {
    const dir = await tmpDir(t);
    const keys = await ageKeygen();
    assert.equal(await ageRecipientOf(keys.identity), keys.recipient);
    const identityFile = await writeIdentityFile(dir, keys.identity);
    const plain = randomBytes(200_000);
    const sealed = await ageEncrypt([keys.recipient], plain);
    assert.deepEqual(await ageDecrypt(identityFile, sealed), plain);
    const armored = await ageEncrypt([keys.recipient], plain, { armor: true });
    assert.match(armored.toString('latin1'), /^-----BEGIN AGE ENCRYPTED FILE-----/);
    assert.deepEqual(await ageDecrypt(identityFile, armored), plain);
  });

  it('encrypts with the age-encryption package and decrypts with the CLI', async (t) => {
    const dir = await tmpDir(t);
    const identity = await generateX25519Identity();
    const recipient = await identityToRecipient(identity);
    const e = new Encrypter();
    e.addRecipient(recipient);
    const plain = randomBytes(150_000);
    const sealed = Buffer.from(await e.encrypt(plain));
    assert.deepEqual(await ageDecrypt(await writeIdentityFile(dir, identity), sealed), plain);
  });

  it('reports a wrong identity with the CLI message', async (t) => {
    const dir = await tmpDir(t);
    const a = await ageKeygen();
    const b = await ageKeygen();
    const sealed = await ageEncrypt([a.recipient], Buffer.from('secret'));
    await assert.rejects(ageDecrypt(await writeIdentityFile(dir, b.identity), sealed), /no identity matched/);
  });
});

describe('harness: GCS (the in-repo fake)', () => {
  const servers = useServers({ gcs: true });

  it('saves, downloads and lists through @google-cloud/storage', async () => {
    const bucketName = await servers.gcs.createBucket();
    const bucket = servers.gcs.storage().bucket(bucketName);
    const body = randomBytes(3000);
    await bucket.file('a/one').save(body, { resumable: false });
    await bucket.file('a/two').save(Buffer.from('two'), { resumable: false });
    const [downloaded] = await bucket.file('a/one').download();
    assert.deepEqual(downloaded, body);
    const [files] = await bucket.getFiles({ prefix: 'a/' });
    assert.deepEqual(
      files.map((f) => f.name),
      ['a/one', 'a/two'],
    );
    assert.ok(servers.gcs.requests.length > 0);
  });
});
